"""A store that fails under a running execution: one line, exit 6, and what to run next."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli


@pytest.fixture
def small_disk(tmpfs: Callable[[str, str], Path]) -> Path:
    """A 4 MB disk that fills up."""
    return tmpfs("small", "size=4m")


def test_a_store_that_fails_mid_run_says_how_to_continue(tmp_path: Path, small_disk: Path) -> None:
    """Trial 8, F5: the store failing under a running execution (a full disk, a dropped
    connection) ended the run with exit 6 and no `connectsw resume ID`."""
    graph = {
        "name": "fill",
        "tasks": [
            {
                "id": "fill",
                "agent": "shell",
                "with": {"command": f"dd if=/dev/zero of={small_disk}/fill bs=1M count=8 || true"},
            },
            {"id": "after", "agent": "noop", "needs": ["fill"]},
        ],
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    runner = Cli(tmp_path, small_disk / "data")
    result = runner("run", "g.json", "--yes", "-w", tmp_path / "ws")
    assert result.returncode == ExitCode.STORE, str(result)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "Traceback" not in result.stderr, str(result)
    assert "once the store answers, continue with `connectsw resume exec_" in line, line
