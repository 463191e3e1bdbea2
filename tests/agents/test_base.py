"""TaskContext: the workspace paths an agent may write (real files in a temporary workspace)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from connectsw.agents.base import TaskContext
from connectsw.core.errors import TaskError
from connectsw.core.models import Request, TaskSpec


def make_ctx(workspace: Path) -> TaskContext:
    return TaskContext(
        execution_id="exec_base",
        task=TaskSpec(id="t1", agent="plugin"),
        workspace=workspace,
        request=Request(command="run"),
    )


@pytest.mark.parametrize(
    "relpath",
    [".git/hooks/post-commit", ".git", "sub/.git/config", "./.git/x", ".GIT/x", "a/../.git/x"],
)
def test_writing_into_git_is_refused(tmp_path: Path, relpath: str) -> None:
    """Trial 5 item 12: `ctx.write(".git/hooks/post-commit")` "succeeded" with an artifact
    that git never commits (and a hook that would run on the next commit)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    ctx = make_ctx(tmp_path)
    with pytest.raises(TaskError, match=r"inside \.git.*git's own directory"):
        ctx.write(relpath, "#!/bin/sh\necho hooked\n")
    assert not (tmp_path / ".git" / "hooks" / "post-commit").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_symlink_into_git_is_refused_and_ordinary_paths_are_written(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "hooks").symlink_to(tmp_path / ".git" / "hooks")
    ctx = make_ctx(tmp_path)
    with pytest.raises(TaskError, match=r"inside \.git"):
        ctx.write("hooks/post-commit", "x")
    assert not (tmp_path / ".git" / "hooks" / "post-commit").exists()
    # Names that merely contain ".git" are ordinary files.
    for ok in (".gitignore", "docs/.github/x.md", "a.git/b", ".gitkeep"):
        assert ctx.write(ok, "x").path == ok
        assert (tmp_path / ok).read_text() == "x"
    # Still a ValueError for callers that catch one (a path outside the workspace too).
    with pytest.raises(ValueError, match="outside the workspace"):
        ctx.path("../elsewhere.txt")
