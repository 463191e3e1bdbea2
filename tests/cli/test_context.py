"""The request context's git helper runs under the supervisor."""

from __future__ import annotations

import subprocess
from pathlib import Path

from connectsw.cli.context import _git, local_context


def test_git_info_of_a_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    info = local_context(tmp_path).git_info
    assert info["branch"] == "trunk"
    assert len(info["commit"]) == 40


def test_no_git_info_outside_a_repository_or_for_a_missing_dir(tmp_path: Path) -> None:
    # stderr ("fatal: not a git repository") never leaks into the value.
    assert _git(tmp_path, "rev-parse", "--abbrev-ref", "HEAD") == ""
    assert _git(tmp_path / "missing", "rev-parse", "HEAD") == ""
    assert local_context(tmp_path).git_info == {}
