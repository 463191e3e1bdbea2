"""A worker that dies mid-task (kill -9, as an out-of-memory kill does) is one failed attempt.

Dask is never allowed to re-run the task behind the engine's back: the attempt
is recorded failed with a readable cause and the task's own ``retries`` decide.
A real CLI process runs a real 2-process LocalCluster (the shipped defaults).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectsw.core.models import TaskStatus
from connectsw.core.stores import open_store

pytestmark = pytest.mark.slow

# The shell's parent is the supervisor's reaper; the reaper's parent is the Dask worker.
KILL_WORKER = "echo ran >> ran.txt; kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)"


@pytest.mark.parametrize("retries", [0, 1])
def test_a_task_that_kills_its_worker_runs_once_per_attempt(tmp_path: Path, retries: int) -> None:
    ws = tmp_path / "ws"
    graph = {
        "name": "oom",
        "tasks": [
            {"id": "hog", "agent": "shell", "retries": retries, "with": {"command": KILL_WORKER}},
            {"id": "after", "agent": "noop", "needs": ["hog"]},
        ],
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"), CONNECTSW_ENGINE__RETRY_BACKOFF="0.05")
    proc = subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", "run", "g.json", "--yes", "--json", "-w", ws],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr
    view = json.loads(proc.stdout)
    assert view["status"] == "failed"
    assert "worker died" in view["error"]
    ran = (ws / "ran.txt").read_text().splitlines()
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}")
    try:
        hog = store.task_attempts(view["executionId"], "hog")
        # Each attempt ran its command once; the task's retries decide how many there
        # are. (A retry submitted under the key of the attempt its worker died in got
        # that attempt's error back from the scheduler: "lost before it started",
        # three times over, and the retry never ran.)
        assert [a.attempt for a in hog] == list(range(1, retries + 2))
        assert len(ran) == retries + 1
        assert [a.status for a in hog] == [TaskStatus.FAILED] * (retries + 1)
        assert all(a.process is not None for a in hog)
        assert all("worker died" in (a.error or "") for a in hog)
        after = store.task_attempts(view["executionId"], "after")
        assert [a.status for a in after] == [TaskStatus.SKIPPED]
    finally:
        store.close()
