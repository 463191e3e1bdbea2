"""The workspace is a git repository: each task's artifacts become one commit."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from connectsw.core import supervisor
from connectsw.core.errors import ConnectSWError, ExitCode, TaskError, is_utf8, shown
from connectsw.core.textfiles import check_path, os_reason

AUTHOR = {"name": "ConnectSW", "email": "orchestrator@connectsw.invalid"}
IDENTITY = {
    "GIT_AUTHOR_NAME": AUTHOR["name"],
    "GIT_AUTHOR_EMAIL": AUTHOR["email"],
    "GIT_COMMITTER_NAME": AUTHOR["name"],
    "GIT_COMMITTER_EMAIL": AUTHOR["email"],
}
#: Seconds a git command may run.
GIT_TIMEOUT = 120.0
#: Bytes of a git command's stdout (and, apart, stderr) kept.
GIT_OUTPUT_LIMIT = 1024 * 1024
#: Settings given to every git command ConnectSW runs in a workspace (or a user's
#: repository): none of them may run code the repository holds. A task can write
#: ``.git/hooks`` and ``.git/config``; a hook (``post-commit``...), an fsmonitor
#: command, a signing program or an external diff would otherwise run inside the
#: engine's commit, after the task's attempt ended, outside its deadline, and inside
#: later tasks' commits too (trial 7). Command-line settings win over the
#: repository's. Filter drivers are named by the repository: :func:`_filter_settings`.
SAFE_GIT_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "diff.external=",
)
#: Git commands given declared output paths: the paths are taken literally. A declared
#: output named ``:(top)notes.txt`` or ``:(glob)*.txt`` is that file, not pathspec magic
#: committing files outside the workspace or undeclared ones (trial 8, F2).
_LITERAL_PATHS = frozenset({"add", "diff", "commit"})
#: Git commands that may run a filter driver's clean or smudge command on the files.
_FILTERING = frozenset({"add", "commit", "checkout", "merge", "stash", "reset"})


class GitStopped(TaskError):
    """A git command was stopped for its caller's reason (``timeout``: the caller's
    deadline, not git's own limit; ``cancelled``...): :attr:`reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WorkspaceError(ConnectSWError):
    """The workspace cannot be used: a parent is a file, it is not writable, ..."""

    code = "workspace_error"
    exit_code = ExitCode.INVALID_INPUT


@dataclass(frozen=True)
class GitResult:
    """A finished git command: its exit code and (bounded) stdout; stderr kept apart."""

    returncode: int
    stdout: str
    stderr: str = ""


def _git(
    workspace: Path,
    *args: str,
    check: bool = True,
    filters: Sequence[str] | None = None,
    deadline: float | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> GitResult:
    """Run ``git -C workspace ARGS`` under the supervisor, at most :data:`GIT_TIMEOUT` s.

    ``filters``: the repository's filter drivers turned off (:func:`_filter_settings`),
    when the caller already read them; read here for a command that may filter.
    ``deadline`` (a :func:`time.monotonic` value) and ``should_stop``: the caller's
    (a task attempt's), which end the command's process group as they end the
    attempt's own (:class:`GitStopped`).

    Raises TaskError (one line) when ``check`` and git fails or times out,
    ConnectSWError when git is not installed, WorkspaceError when the
    workspace is not a directory.
    """
    if not workspace.is_dir():
        if not check:
            return GitResult(128, "", f"{workspace} is not a directory")
        raise WorkspaceError(f"workspace {workspace}: not a directory")
    # Commit as ConnectSW unless the user configured an identity.
    env = supervisor.agent_env({k: v for k, v in IDENTITY.items() if k not in os.environ})
    settings = list(SAFE_GIT_CONFIG)
    if args and args[0] in _LITERAL_PATHS:
        settings.append("--literal-pathspecs")
    if args and args[0] in _FILTERING:
        settings += _filter_settings(workspace) if filters is None else filters
    limit = time.monotonic() + GIT_TIMEOUT
    own_limit = deadline is None or limit <= deadline
    try:
        outcome = supervisor.run(
            ["git", *settings, "-C", str(workspace), *args],
            cwd=workspace,
            env=env,
            deadline=limit if own_limit else deadline,
            should_stop=should_stop,
            output_limit=GIT_OUTPUT_LIMIT,
            split_stderr=True,
        )
    except supervisor.SupervisorError as exc:
        if exc.reason == "command not found":
            raise ConnectSWError(
                "git is not installed; the workspace must be a git repository"
            ) from None
        raise WorkspaceError(f"workspace {workspace}: {exc.reason}") from None
    if outcome.stopped == "timeout" and own_limit:
        raise TaskError(f"git {args[0]} timed out after {GIT_TIMEOUT:g}s")
    if outcome.stopped or outcome.returncode is None:
        reason = outcome.stopped or "timeout"
        raise GitStopped(reason, f"git {args[0]} stopped: {reason}")
    result = GitResult(outcome.returncode, outcome.output, outcome.stderr)
    if check and result.returncode != 0:
        lines = [
            line
            for line in (result.stderr or result.stdout).strip().splitlines()
            if line.strip() and not line.startswith("hint:")
        ]
        raise TaskError(f"git {args[0]} failed: {lines[0] if lines else result.returncode}")
    return result


def _filter_settings(workspace: Path) -> list[str]:
    """``-c`` settings that turn off every filter driver the repository's configuration
    defines (``filter.NAME.clean``/``smudge``/``process``: commands ``.gitattributes``
    would have git run on the files it adds or checks out)."""
    found = _git(workspace, "config", "--name-only", "--get-regexp", r"^filter\.", check=False)
    names = {
        line[len("filter.") :].rsplit(".", 1)[0]
        for line in found.stdout.splitlines()
        if line.startswith("filter.") and line.count(".") >= 2
    }
    out: list[str] = []
    for name in sorted(names):
        for key, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")):
            out += ["-c", f"filter.{name}.{key}={value}"]
    return out


def check_links(workspace: Path) -> None:
    """Refuse a workspace that is, or lies under, a broken symbolic link.

    Following it would create the link's target, somewhere else than the path the
    user gave (a project that was moved). A path that is not valid UTF-8 is refused
    too: it could be neither stored nor shown (every record is JSON). Raises
    WorkspaceError: ``workspace W: LINK is a broken symbolic link to TARGET``,
    ``workspace W: the path is not valid UTF-8``, or the system's reason for refusing
    the path (``workspace W: name too long``: core/textfiles.py's rule).
    """
    if not is_utf8(str(workspace)):
        raise WorkspaceError(f"workspace {shown(str(workspace))}: the path is not valid UTF-8")
    with check_path(f"workspace {workspace}", WorkspaceError):
        _check_links(workspace)


def _check_links(workspace: Path) -> None:
    """Raises OSError for a path the system refuses (a loop of links: ELOOP)."""
    for path in (workspace, *workspace.parents):
        if not path.is_symlink():
            continue
        try:
            os.stat(path)
        except FileNotFoundError:
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            raise WorkspaceError(
                f"workspace {workspace}: {path} is a broken symbolic link to {target}"
            ) from None


def check_usable(workspace: Path) -> None:
    """Create ``workspace`` (not its repository) and check it is a writable directory.

    What ``Engine.submit`` checks before an execution is stored (issue 5, kind 11).
    Raises WorkspaceError (one line, exit 2): a file, under a file, not writable, a
    broken symbolic link on its way, a path the system refuses (name too long...), a
    ``.git`` that leads to no repository (a moved worktree's ``gitdir:`` file).
    """
    _make_dir(workspace)
    if os.path.lexists(workspace / ".git"):
        found = _git(workspace, "rev-parse", "--git-dir", check=False)
        if found.returncode != 0:
            lines = [ln for ln in found.stderr.strip().splitlines() if ln.strip()]
            said = lines[0] if lines else f"exit {found.returncode}"
            raise WorkspaceError(
                f"workspace {workspace}: its .git does not lead to a git repository ({said});"
                " fix or remove it"
            )


def _make_dir(workspace: Path) -> None:
    """Create ``workspace`` and check it is writable; WorkspaceError (one line) if not
    (also for a broken symbolic link on its way: :func:`check_links`)."""
    check_links(workspace)
    real = Path(os.path.realpath(workspace))
    if any(part.lower() == ".git" for part in (*workspace.parts, *real.parts)):
        # Git never commits there, and what a task writes could be run by git itself
        # (hooks, config) in the enclosing repository (trial 7, M8).
        raise WorkspaceError(f"workspace {workspace}: it is inside a .git directory")
    with check_path(f"workspace {workspace}", WorkspaceError):
        _make_writable_dir(workspace)


def _make_writable_dir(workspace: Path) -> None:
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkspaceError(f"workspace {workspace}: is a file, not a directory") from None
    except NotADirectoryError:
        raise WorkspaceError(
            f"workspace {workspace}: a parent is a file, not a directory"
        ) from None
    except OSError as exc:
        raise WorkspaceError(f"workspace {workspace}: {_why(exc)}") from None
    if not workspace.is_dir():
        raise WorkspaceError(f"workspace {workspace}: is a file, not a directory")
    if not os.access(workspace, os.W_OK | os.X_OK):
        # access(2) reports EROFS for a read-only file system, EACCES for permissions.
        try:
            read_only = bool(os.statvfs(workspace).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        reason = "read-only file system" if read_only else "permission denied"
        raise WorkspaceError(f"workspace {workspace}: not writable ({reason})")


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({os_reason(exc)})"
    return os_reason(exc)


def ensure_repo(workspace: Path) -> Path:
    """Create ``workspace`` if needed and make sure its commits have a repository to go to.

    A workspace inside an existing repository commits there (a product in a
    monorepo), unless that repository ignores it: then it gets a repository of its own.
    Raises WorkspaceError (one line) if the workspace cannot be created or written:
    a parent is a file, a read-only file system, no permission.
    """
    _make_dir(workspace)
    inside = _git(workspace, "rev-parse", "--show-toplevel", check=False)
    if inside.returncode == 0:
        top = Path(inside.stdout.strip()).resolve()
        if top == workspace.resolve():
            return workspace
        ignored = _git(top, "check-ignore", "-q", str(workspace.resolve()), check=False)
        if ignored.returncode != 0:
            return workspace
    _init(workspace)
    return workspace


def _init(workspace: Path) -> None:
    """``git init`` in ``workspace``; WorkspaceError (one line, exit 2) if git refuses:
    the workspace is unusable input, not a failed execution. A ``.git`` file whose
    ``gitdir:`` is gone (a moved or deleted worktree) is the usual case."""
    init = _git(workspace, "init", "-q", check=False)
    if init.returncode == 0:
        return
    lines = [line for line in init.stderr.strip().splitlines() if not line.startswith("hint:")]
    said = lines[0] if lines else f"exit {init.returncode}"
    if os.path.lexists(workspace / ".git"):
        raise WorkspaceError(
            f"workspace {workspace}: its .git does not lead to a git repository ({said});"
            " fix or remove it"
        )
    raise WorkspaceError(f"workspace {workspace}: git init failed: {said}")


def check_still_there(workspace: Path, commit: str | None) -> None:
    """Refuse to go on in a workspace that is not the one an execution already ran in.

    For an execution that has run tasks there (``Engine.run`` on a resume, an approval
    or changes requested): the workspace must still exist, and hold ``commit`` (its
    latest task commit), if any. Otherwise the engine would re-create it empty (or use
    another repository at the same path) and run the next stage without the earlier
    stages' work (issue 5, kinds 10 and 11). Nothing is created here.

    Raises WorkspaceError (one line, exit 2): ``workspace W is gone (moved or
    deleted)...``, ``workspace W no longer holds this execution's commit SHA...``.
    """
    if not os.path.lexists(workspace):
        raise WorkspaceError(
            f"workspace {workspace} is gone (moved or deleted) since this execution ran"
            " there; put it back, then resume the execution"
        )
    if not workspace.is_dir():
        raise WorkspaceError(f"workspace {workspace}: is a file, not a directory")
    if commit is None:
        return
    found = _git(workspace, "cat-file", "-e", f"{commit}^{{commit}}", check=False)
    if found.returncode != 0:
        raise WorkspaceError(
            f"workspace {workspace} no longer holds this execution's commit {commit[:12]}"
            " (another repository at that path?); put the original back, then resume"
            " the execution"
        )


@contextmanager
def _repo_lock(workspace: Path) -> Iterator[Path]:
    """Hold ConnectSW's commit lock of the workspace's repository; yields its git dir.

    Parallel tasks commit to the same repository; git's index.lock would make one fail.
    """
    git_dir = Path(_git(workspace, "rev-parse", "--absolute-git-dir").stdout.strip())
    with open(git_dir / "connectsw-commit.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield git_dir
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def commit(
    workspace: Path,
    paths: Sequence[str],
    message: str,
    *,
    deadline: float | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> str | None:
    """Commit exactly ``paths`` (relative to the workspace, taken literally); None if
    nothing changed.

    ``deadline`` and ``should_stop`` are the attempt's: the commit is part of the
    attempt, so its git commands end at the attempt's deadline and on cancel (a 4 GB
    output took 3 x 120 s past a 3 s timeout, trial 8, F1). Raises :class:`GitStopped`
    then (a lock file git left behind is removed), TaskError when git fails.
    """
    if not paths:
        return None
    with _repo_lock(workspace) as git_dir:
        try:

            def bound(
                *args: str, check: bool = True, filters: Sequence[str] | None = None
            ) -> GitResult:
                return _git(workspace, *args, check=check, filters=filters,
                            deadline=deadline, should_stop=should_stop)  # fmt: skip

            filters = _filter_settings(workspace)  # read once for add and commit
            bound("add", "--", *paths, filters=filters)
            if bound("diff", "--cached", "--quiet", "--no-ext-diff", "--", *paths,
                     check=False).returncode == 0:  # fmt: skip
                return None
            bound("commit", "-q", "--no-verify", "-m", message, "--", *paths, filters=filters)
        except GitStopped:
            # A git killed after its grace may leave its index lock; ConnectSW's own
            # commits are serialised by the lock held here, so it is no one else's.
            with contextlib.suppress(OSError):
                (git_dir / "index.lock").unlink()
            raise
        return _git(workspace, "rev-parse", "HEAD").stdout.strip()


def log(workspace: Path) -> list[str]:
    """Commit subjects, newest first (empty for a repository with no commits)."""
    proc = _git(workspace, "log", "--format=%s", check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


# -- server mode: a workspace of its own per execution, moved as git bundles ---------


def init_own_repo(workspace: Path) -> Path:
    """Create ``workspace`` as a repository of its own (never an enclosing one's).

    Server-side workspaces (DESIGN.md "Local mode and server mode"). Raises
    WorkspaceError if it cannot be created.
    """
    _make_dir(workspace)
    _init(workspace)
    return workspace


def clone_bundle(bundle: Path, workspace: Path) -> Path:
    """Make ``workspace`` (absent or empty) a clone of a git bundle's HEAD.

    Raises TaskError (one line) for a file that is not a valid bundle.
    """
    _make_dir(workspace)
    _init(workspace)
    _git(workspace, "fetch", "-q", str(bundle), "+HEAD:refs/remotes/origin/HEAD")
    _git(workspace, "checkout", "-q", "-B", "main", "refs/remotes/origin/HEAD")
    return workspace


def verify_bundle(bundle: Path) -> bool:
    """True when ``bundle`` is a git bundle with a HEAD (read without a repository)."""
    heads = _git(bundle.parent, "bundle", "list-heads", str(bundle), check=False)
    return heads.returncode == 0 and any(
        line.endswith(" HEAD") for line in heads.stdout.splitlines()
    )


def create_bundle(workspace: Path, bundle: Path) -> None:
    """Write a bundle of the workspace's HEAD (its whole history) to ``bundle``.

    Raises TaskError when the repository has no commit yet.
    """
    _git(workspace, "bundle", "create", "-q", str(bundle), "HEAD")


def has_commits(workspace: Path) -> bool:
    """True when ``workspace`` is in a repository whose HEAD has a commit."""
    return _git(workspace, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0


def pull_bundle(bundle: Path, workspace: Path) -> list[str]:
    """Bring a bundle's commits into the local repository at ``workspace``.

    A workspace without commits (or without a repository) takes the bundle's
    history as it is; one with commits is fast-forwarded. Returns the subjects of
    the commits it gained, newest first. Raises WorkspaceError when the local
    history has diverged (nothing is changed then) and TaskError for an invalid
    bundle.
    """
    _make_dir(workspace)
    if _git(workspace, "rev-parse", "--show-toplevel", check=False).returncode != 0:
        _init(workspace)
    _git(workspace, "fetch", "-q", str(bundle), "HEAD")
    fetched = _git(workspace, "rev-parse", "FETCH_HEAD").stdout.strip()
    if not has_commits(workspace):
        _git(workspace, "checkout", "-q", "-B", "main", fetched)
        return _git(workspace, "log", "--format=%s", fetched).stdout.splitlines()
    gained = _git(workspace, "log", "--format=%s", f"HEAD..{fetched}").stdout.splitlines()
    merged = _git(workspace, "merge", "-q", "--ff-only", fetched, check=False)
    if merged.returncode != 0:
        raise WorkspaceError(
            f"workspace {workspace}: its history has diverged from the execution's;"
            " commit or move your changes, then pull again"
        )
    return gained
