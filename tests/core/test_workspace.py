"""The workspace: a git repository where each task's artifacts become one commit."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core import workspace
from connectsw.core.errors import ConnectSWError, TaskError


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return workspace.ensure_repo(tmp_path / "ws")


def test_ensure_repo_creates_and_inits(tmp_path: Path) -> None:
    target = tmp_path / "new" / "ws"
    assert workspace.ensure_repo(target) == target
    assert (target / ".git").is_dir()
    assert workspace.log(target) == []


def test_ensure_repo_keeps_an_existing_repository(repo: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    sha = workspace.commit(repo, ["a.txt"], "first")
    workspace.ensure_repo(repo)
    assert git(repo, "rev-parse", "HEAD").strip() == sha
    # A subfolder of a repository is inside it: no nested repository.
    sub = repo / "sub"
    workspace.ensure_repo(sub)
    assert not (sub / ".git").exists()


def test_commit_exactly_the_given_paths(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_AUTHOR_NAME", raising=False)
    (repo / "a.txt").write_text("a\n")
    (repo / "b.txt").write_text("b\n")
    base = workspace.commit(repo, ["a.txt", "b.txt"], "base")
    assert base is not None
    (repo / "a.txt").write_text("a2\n")
    (repo / "b.txt").write_text("b2\n")  # modified by someone else: stays uncommitted
    (repo / "docs").mkdir()
    (repo / "docs" / "c.md").write_text("c\n")
    (repo / "stray.txt").write_text("untracked\n")
    sha = workspace.commit(repo, ["a.txt", "docs/c.md"], "task: write a and c")
    assert sha is not None
    assert len(sha) == 40
    assert git(repo, "rev-parse", "HEAD").strip() == sha
    changed = git(repo, "show", "--name-only", "--format=", sha).split()
    assert sorted(changed) == ["a.txt", "docs/c.md"]
    assert git(repo, "log", "-1", "--format=%s %an").strip() == "task: write a and c ConnectSW"
    status = git(repo, "status", "--porcelain").splitlines()
    assert sorted(status) == [" M b.txt", "?? stray.txt"]
    assert workspace.log(repo) == ["task: write a and c", "base"]


def test_staged_unrelated_change_not_committed(repo: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    (repo / "b.txt").write_text("b\n")
    git(repo, "add", "b.txt")  # someone staged b
    sha = workspace.commit(repo, ["a.txt"], "only a")
    assert git(repo, "show", "--name-only", "--format=", sha or "HEAD").split() == ["a.txt"]
    assert "A  b.txt" in git(repo, "status", "--porcelain").splitlines()


def test_commit_unchanged_returns_none(repo: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    first = workspace.commit(repo, ["a.txt"], "write a")
    assert first is not None
    assert workspace.commit(repo, ["a.txt"], "write a (retry)") is None
    assert git(repo, "rev-parse", "HEAD").strip() == first
    assert workspace.log(repo) == ["write a"]
    assert workspace.commit(repo, [], "nothing") is None


def test_unchanged_paths_ignore_other_changes(repo: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    workspace.commit(repo, ["a.txt"], "write a")
    (repo / "b.txt").write_text("b\n")
    git(repo, "add", "b.txt")
    assert workspace.commit(repo, ["a.txt"], "retry a") is None
    assert workspace.log(repo) == ["write a"]


def test_commit_missing_path_is_task_error(repo: Path) -> None:
    with pytest.raises(TaskError, match="git add failed"):
        workspace.commit(repo, ["ghost.txt"], "nothing")


def test_parallel_commits_all_land(repo: Path) -> None:
    (repo / "seed.txt").write_text("seed\n")
    workspace.commit(repo, ["seed.txt"], "seed")
    n = 8
    shas: dict[int, str | None] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def task(i: int) -> None:
        try:
            rel = f"out/task{i}.txt"
            (repo / "out").mkdir(exist_ok=True)
            (repo / rel).write_text(f"task {i}\n")
            barrier.wait()
            shas[i] = workspace.commit(repo, [rel], f"task {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(shas[i] for i in range(n))
    assert len(set(shas.values())) == n
    subjects = workspace.log(repo)
    assert len(subjects) == n + 1
    assert sorted(subjects[:n]) == sorted(f"task {i}" for i in range(n))
    for i in range(n):
        files = git(repo, "show", "--name-only", "--format=", str(shas[i])).split()
        assert files == [f"out/task{i}.txt"]
    assert git(repo, "status", "--porcelain") == ""


def test_a_workspace_in_an_existing_repository_commits_there(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    (outer / "sub").mkdir(parents=True)
    workspace.ensure_repo(outer)
    workspace.ensure_repo(outer / "sub")
    assert not (outer / "sub" / ".git").exists()
    (outer / "sub" / "a.txt").write_text("a\n")
    workspace.commit(outer / "sub", ["a.txt"], "add a")
    assert workspace.log(outer) == ["add a"]


def test_an_ignored_workspace_gets_its_own_repository(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    workspace.ensure_repo(outer)
    (outer / ".gitignore").write_text("ignored/\n")
    ws = outer / "ignored" / "product"
    workspace.ensure_repo(ws)
    assert (ws / ".git").is_dir()
    (ws / "x.txt").write_text("x\n")
    assert workspace.commit(ws, ["x.txt"], "x") is not None
    assert workspace.log(ws) == ["x"]
    assert workspace.log(outer) == []


@pytest.fixture
def read_only_dir(tmpfs: Callable[[str, str], Path]) -> Path:
    """A real read-only file system (an empty tmpfs mounted ro)."""
    return tmpfs("ro", "ro,size=1m")


def test_workspace_under_a_file_is_one_line_error(tmp_path: Path) -> None:
    # Issue 5, fault 10: an OSError traceback, "internal error" (exit 70).
    (tmp_path / "file").write_text("x")
    with pytest.raises(workspace.WorkspaceError) as info:
        workspace.ensure_repo(tmp_path / "file" / "ws")
    assert (
        str(info.value)
        == f"workspace {tmp_path / 'file' / 'ws'}: a parent is a file, not a directory"
    )
    assert isinstance(info.value, ConnectSWError)
    with pytest.raises(workspace.WorkspaceError, match="is a file, not a directory"):
        workspace.ensure_repo(tmp_path / "file")


def test_workspace_on_a_read_only_file_system_is_one_line_error(read_only_dir: Path) -> None:
    with pytest.raises(workspace.WorkspaceError) as info:
        workspace.ensure_repo(read_only_dir / "ws")
    assert (
        str(info.value) == f"workspace {read_only_dir / 'ws'}: not writable (read-only file system)"
    )
    # The mount point exists: refused before git tries to write there.
    with pytest.raises(workspace.WorkspaceError, match=r"not writable \(read-only file system\)$"):
        workspace.ensure_repo(read_only_dir)


def test_git_output_and_stderr_are_kept_apart(repo: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    workspace.commit(repo, ["a.txt"], "first")
    assert workspace.log(repo) == ["first"]
    with pytest.raises(TaskError, match=r"^git add failed: fatal: pathspec 'nope' did not match"):
        workspace.commit(repo, ["nope"], "x")


def test_git_runs_without_engine_credentials(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    envs: list[dict[str, str]] = []
    real = workspace.supervisor.run

    def run(argv: list[str], **kwargs: object) -> object:
        envs.append(dict(kwargs["env"]))  # type: ignore[call-overload]
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(workspace.supervisor, "run", run)
    (repo / "a.txt").write_text("a\n")
    workspace.commit(repo, ["a.txt"], "first")
    assert envs and all("PGPASSWORD" not in env for env in envs)


@pytest.mark.parametrize("make", ["ensure_repo", "init_own_repo"])
def test_a_workspace_through_a_broken_link_is_not_created_at_its_target(
    tmp_path: Path, make: str
) -> None:
    """Every way a workspace is made (a run, the server's own, ``pull``) goes through
    the same check: the link's target is not created."""
    link = tmp_path / "moved"
    link.symlink_to(tmp_path / "gone")
    for ws in (link, link / "ws"):
        with pytest.raises(workspace.WorkspaceError) as info:
            getattr(workspace, make)(ws)
        assert str(info.value) == (
            f"workspace {ws}: {link} is a broken symbolic link to {tmp_path / 'gone'}"
        )
    assert not (tmp_path / "gone").exists()


def test_a_workspace_path_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Trial 5, item 9: it was stored, and the record could not be written (exit 6)."""
    import os

    bad = tmp_path / os.fsdecode(b"caf\xe9")
    with pytest.raises(workspace.WorkspaceError, match=r"caf\\xe9: the path is not valid UTF-8$"):
        workspace.ensure_repo(bad)
    assert not bad.exists()


@pytest.mark.parametrize("make", ["ensure_repo", "init_own_repo", "check_usable"])
def test_a_workspace_path_the_system_refuses_is_one_line(tmp_path: Path, make: str) -> None:
    """Trial 6 (issue 5, kind 10): a component over 255 bytes was an OSError from
    ``is_symlink()``, "internal error" (exit 70)."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    long = tmp_path / ("d" * 300)
    for ws, reason in (
        (long, "name too long"),
        (long / "sub", "name too long"),
        (loop / "ws", "too many levels of symbolic links"),
    ):
        with pytest.raises(workspace.WorkspaceError) as info:
            getattr(workspace, make)(ws)
        assert str(info.value) == f"workspace {ws}: {reason}"


def test_check_usable_creates_the_workspace_and_refuses_a_file(tmp_path: Path) -> None:
    """What ``Engine.submit`` checks before an execution is stored (issue 5, kind 11)."""
    workspace.check_usable(tmp_path / "new" / "ws")
    assert (tmp_path / "new" / "ws").is_dir()
    assert not (tmp_path / "new" / "ws" / ".git").exists()  # the run makes the repository
    with pytest.raises(workspace.WorkspaceError, match="is a file, not a directory$"):
        workspace.check_usable(Path("/dev/null"))


def test_a_workspace_an_execution_ran_in_must_still_be_there(repo: Path, tmp_path: Path) -> None:
    """Issue 5, kind 11/10: check_still_there refuses a moved, deleted or replaced
    workspace and creates nothing; the original passes, with or without a commit."""
    (repo / "a.txt").write_text("a\n")
    sha = workspace.commit(repo, ["a.txt"], "first")
    assert sha is not None
    workspace.check_still_there(repo, sha)
    workspace.check_still_there(repo, None)
    repo.rename(tmp_path / "moved")
    with pytest.raises(workspace.WorkspaceError, match="is gone"):
        workspace.check_still_there(repo, sha)
    with pytest.raises(workspace.WorkspaceError, match="is gone"):
        workspace.check_still_there(repo, None)  # ran there without committing
    assert not repo.exists()
    workspace.ensure_repo(repo)  # another repository at the same path
    with pytest.raises(workspace.WorkspaceError, match=f"no longer holds .*{sha[:12]}"):
        workspace.check_still_there(repo, sha)


@pytest.mark.parametrize("how", ["ensure_repo", "init_own_repo", "pull_bundle"])
def test_a_git_file_to_a_missing_gitdir_is_a_workspace_error(
    tmp_path: Path, repo: Path, how: str
) -> None:
    """A moved worktree's ``.git`` file: one line, exit 2 (not a failed task, exit 1)."""
    ws = tmp_path / "wt"
    ws.mkdir()
    (ws / ".git").write_text(f"gitdir: {tmp_path / 'gone'}\n")
    with pytest.raises(workspace.WorkspaceError, match="its .git does not lead") as info:
        if how == "pull_bundle":
            (repo / "a.txt").write_text("a\n")
            workspace.commit(repo, ["a.txt"], "first")
            workspace.create_bundle(repo, tmp_path / "b.bundle")
            workspace.pull_bundle(tmp_path / "b.bundle", ws)
        else:
            getattr(workspace, how)(ws)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "setup",
    [
        # a hook the task wrote: post-commit runs after the commit (--no-verify skips
        # only pre-commit and commit-msg)
        "printf '#!/bin/sh\\ntouch \"$MARK\"\\n' > .git/hooks/post-commit"
        " && chmod +x .git/hooks/post-commit",
        "printf '#!/bin/sh\\ntouch \"$MARK\"\\n' > .git/hooks/post-index-change"
        " && chmod +x .git/hooks/post-index-change",
        "git config core.fsmonitor 'touch \"$MARK\"; false'",
        "git config commit.gpgSign true && git config gpg.program \"sh -c 'touch $MARK; false'\"",
        # a filter driver for the files it adds
        "git config filter.evil.clean 'touch \"$MARK\"; cat'"
        " && git config filter.evil.required true && echo 'a.txt filter=evil' > .gitattributes",
        "git config filter.evil.process 'touch \"$MARK\"' && echo '* filter=evil' > .gitattributes",
    ],
    ids=["post-commit", "post-index-change", "fsmonitor", "gpg", "clean-filter", "process-filter"],
)
def test_the_engines_commits_run_no_code_the_repository_holds(
    repo: Path, tmp_path: Path, setup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task can write .git/hooks and .git/config: none of it may run inside the
    engine's git commands (after the attempt's deadline, and in later tasks' commits)."""
    mark = tmp_path / "ran"
    monkeypatch.setenv("MARK", str(mark))
    subprocess.run(["sh", "-c", setup], cwd=repo, check=True)
    (repo / "a.txt").write_text("x\n")
    sha = workspace.commit(repo, ["a.txt"], "a: task")
    assert sha
    assert not mark.exists()
    # Stored as written, no filter applied.
    assert git(repo, "-c", "core.hooksPath=/dev/null", "show", "HEAD:a.txt") == "x\n"


def test_a_workspace_inside_a_git_directory_is_refused(repo: Path, tmp_path: Path) -> None:
    """Trial 7, M8: a workspace inside a repository's .git was accepted."""
    for ws in (repo / ".git" / "ws", repo / ".GIT" / "x"):
        with pytest.raises(workspace.WorkspaceError, match="inside a .git directory"):
            workspace.check_usable(ws)
    link = tmp_path / "into-git"
    link.symlink_to(repo / ".git")
    with pytest.raises(workspace.WorkspaceError, match="inside a .git directory"):
        workspace.ensure_repo(link / "ws")


def test_output_names_are_paths_not_pathspec_magic(tmp_path: Path) -> None:
    """Trial 8, F2: ``:(top)notes.txt`` committed the enclosing repository's notes.txt
    (a user's uncommitted draft), and ``:(glob)*.txt`` an undeclared file."""
    outer = tmp_path / "outer"
    (outer / "proj").mkdir(parents=True)
    workspace.ensure_repo(outer)
    (outer / "notes.txt").write_text("orig\n")
    git(outer, "add", "notes.txt")
    git(outer, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "init")
    (outer / "notes.txt").write_text("my private draft\n")
    (outer / "private.txt").write_text("untracked private\n")
    ws = outer / "proj"
    (ws / "draft.txt").write_text("undeclared\n")
    names = [":(top)notes.txt", ":(top)private.txt", ":(glob)*.txt"]
    for name in names:
        (ws / name).write_text("the task's own file\n")
    workspace.commit(ws, names, "outputs")
    committed = git(outer, "show", "--name-only", "--format=", "HEAD").split("\n")
    assert sorted(filter(None, committed)) == sorted(f"proj/{n}" for n in names)
    assert "draft.txt" in git(outer, "status", "--porcelain")


def test_a_commit_ends_at_its_attempts_deadline_and_stop(repo: Path) -> None:
    """Trial 8, F1: a 4 GB output's commit ran 3 x 120 s (git's own limit) past a 3 s
    timeout, and on after cancel returned. The attempt's deadline and stop reasons end
    git's commands; the lock git leaves is removed, so the next commit works."""
    import time

    with open(repo / "big.bin", "wb") as fh:
        fh.truncate(4 * 1024**3)  # sparse: hashing it takes git a long while
    start = time.monotonic()
    with pytest.raises(workspace.GitStopped) as info:
        workspace.commit(repo, ["big.bin"], "big", deadline=start + 1.5)
    assert info.value.reason == "timeout"
    assert time.monotonic() - start < 1.5 + 5  # the grace, not 120 s
    start = time.monotonic()
    with pytest.raises(workspace.GitStopped) as info:
        workspace.commit(
            repo,
            ["big.bin"],
            "big",
            should_stop=lambda: "cancelled" if time.monotonic() - start > 1 else None,
        )
    assert info.value.reason == "cancelled"
    assert time.monotonic() - start < 1 + 5
    assert not (repo / ".git" / "index.lock").exists()
    (repo / "big.bin").unlink()
    (repo / "a.txt").write_text("a\n")
    assert workspace.commit(repo, ["a.txt"], "a") is not None
