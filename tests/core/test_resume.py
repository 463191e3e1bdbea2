"""kill -9 the orchestrator mid-stage; the next ``connectsw status`` continues the execution.

A real subprocess runs a real 2-process LocalCluster (the shipped defaults), on
the embedded SQLite store and on PostgreSQL. Finished tasks must not run again,
and no task may be lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core.models import ExecutionStatus, TaskStatus
from connectsw.core.stores import open_store

pytestmark = pytest.mark.slow

GRAPH = """
name: crash
tasks:
  - id: fast1
    agent: shell
    with: {command: "echo fast1 >> runs.log"}
  - id: fast2
    agent: shell
    with: {command: "echo fast2 >> runs.log"}
  - id: slow
    agent: shell
    needs: [fast1]
    with: {command: "while [ ! -f go ]; do sleep 0.05; done; echo slow > slow.txt"}
  - id: last
    agent: shell
    needs: [slow, fast2]
    with: {command: "echo last >> runs.log"}
"""


def connectsw(*args: str) -> list[str]:
    return [sys.executable, "-m", "connectsw.cli.main", *args]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_kill_9_mid_stage_then_status_resumes(
    tmp_path: Path, store_url: str, wait_for: Callable[..., None]
) -> None:
    data = tmp_path / "data"
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "graph.yaml").write_text(GRAPH)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(
        CONNECTSW_DATA_DIR=str(data),
        CONNECTSW_STORE__URL=store_url,
        CONNECTSW_ENGINE__HEARTBEAT_INTERVAL="0.2",
    )
    proc = subprocess.Popen(
        connectsw("run", "graph.yaml", "--yes", "--workspace", str(ws)),
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if store_url.startswith("sqlite"):
            wait_for(lambda: (data / "connectsw.db").exists(), timeout=60)
        store = open_store(store_url)

        def mid_stage() -> bool:
            runs = store.list_executions()
            if not runs:
                return False
            states = {r.task_id: r.status for r in store.task_results(runs[0].id)}
            return (
                states.get("fast1") is TaskStatus.SUCCEEDED
                and states.get("fast2") is TaskStatus.SUCCEEDED
                and states.get("slow") is TaskStatus.RUNNING
            )

        wait_for(mid_stage, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    execution = store.list_executions()[0]
    assert execution.status is ExecutionStatus.EXECUTING  # as the dead process left it
    (ws / "go").write_text("")

    status = subprocess.run(
        connectsw("status", execution.id, "--json"),
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["status"] == "completed"
    assert set(view["tasks"].values()) == {"succeeded"}

    # Finished tasks did not run again; the interrupted and the never-started ones ran.
    runs = (ws / "runs.log").read_text().split()
    assert sorted(runs) == ["fast1", "fast2", "last"]
    assert (ws / "slow.txt").read_text() == "slow\n"
    assert [a.attempt for a in store.task_attempts(execution.id, "fast1")] == [1]
    # The interrupted attempt is recorded as such; the next one has a new number.
    slow = store.task_attempts(execution.id, "slow")
    assert [(a.attempt, a.status) for a in slow] == [
        (1, TaskStatus.INTERRUPTED),
        (2, TaskStatus.SUCCEEDED),
    ]
    kinds = [e.kind for e in store.events(execution.id)]
    assert "execution.resumed" in kinds
    assert kinds[-1] == "execution.completed"
