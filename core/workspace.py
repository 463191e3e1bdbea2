"""The workspace is a git repository: each task's artifacts become one commit."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from connectsw.core.errors import ConnectSWError, TaskError

AUTHOR = {"name": "ConnectSW", "email": "orchestrator@connectsw.invalid"}


def _git(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Commit as ConnectSW unless the user configured an identity.
    env.setdefault("GIT_AUTHOR_NAME", AUTHOR["name"])
    env.setdefault("GIT_AUTHOR_EMAIL", AUTHOR["email"])
    env.setdefault("GIT_COMMITTER_NAME", AUTHOR["name"])
    env.setdefault("GIT_COMMITTER_EMAIL", AUTHOR["email"])
    try:
        proc = subprocess.run(
            ["git", "-C", str(workspace), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    except FileNotFoundError:
        raise ConnectSWError(
            "git is not installed; the workspace must be a git repository"
        ) from None
    if check and proc.returncode != 0:
        lines = [
            line
            for line in (proc.stderr or proc.stdout).strip().splitlines()
            if line.strip() and not line.startswith("hint:")
        ]
        raise TaskError(f"git {args[0]} failed: {lines[0] if lines else proc.returncode}")
    return proc


def ensure_repo(workspace: Path) -> Path:
    """Create ``workspace`` if needed and make sure its commits have a repository to go to.

    A workspace inside an existing repository commits there (a product in a
    monorepo), unless that repository ignores it: then it gets a repository of its own.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    inside = _git(workspace, "rev-parse", "--show-toplevel", check=False)
    if inside.returncode == 0:
        top = Path(inside.stdout.strip()).resolve()
        if top == workspace.resolve():
            return workspace
        ignored = _git(top, "check-ignore", "-q", str(workspace.resolve()), check=False)
        if ignored.returncode != 0:
            return workspace
    _git(workspace, "init", "-q")
    return workspace


@contextmanager
def _repo_lock(workspace: Path) -> Iterator[None]:
    # Parallel tasks commit to the same repository; git's index.lock would make one fail.
    git_dir = Path(_git(workspace, "rev-parse", "--absolute-git-dir").stdout.strip())
    with open(git_dir / "connectsw-commit.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def commit(workspace: Path, paths: Sequence[str], message: str) -> str | None:
    """Commit exactly ``paths`` (relative to the workspace); None if nothing changed."""
    if not paths:
        return None
    with _repo_lock(workspace):
        _git(workspace, "add", "--", *paths)
        if (
            _git(workspace, "diff", "--cached", "--quiet", "--", *paths, check=False).returncode
            == 0
        ):
            return None
        _git(workspace, "commit", "-q", "--no-verify", "-m", message, "--", *paths)
        return _git(workspace, "rev-parse", "HEAD").stdout.strip()


def log(workspace: Path) -> list[str]:
    """Commit subjects, newest first (empty for a repository with no commits)."""
    proc = _git(workspace, "log", "--format=%s", check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else []
