"""The runner refuses a second start of an attempt that already has a record.

Dask recomputes a finished task whose result it lost with a dead worker (the
chaos trials found it re-running a whole chain); calling ``run_task`` twice with
the same call is exactly what that recompute does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core.engine import Engine
from connectsw.core.liveness import this_owner
from connectsw.core.models import Execution, TaskStatus, utcnow
from connectsw.core.runner import TaskCall, run_task
from connectsw.core.tasklog import flush

Submit = Callable[..., Execution]


@pytest.mark.parametrize("agent", ["shell", "noop"])  # a durable start, and a brief agent's
def test_a_second_start_of_a_finished_attempt_is_refused(
    engine: Engine, submit_graph: Submit, tmp_path: Path, agent: str
) -> None:
    ws = tmp_path / "ws"
    spec = {"id": "t", "agent": agent}
    if agent == "shell":
        spec["with"] = {"command": "echo ran >> runs.txt"}
    ex = submit_graph({"name": "once", "tasks": [spec]}, workspace=ws)
    ws.mkdir(parents=True, exist_ok=True)
    token = engine.store.claim(ex.id, this_owner(), 0, utcnow())
    assert token is not None
    call = TaskCall(engine.store_url, ex.id, 0, "t", token)
    first = run_task(call)
    flush(engine.store_url)
    again = run_task(call)  # what Dask's recompute does
    flush(engine.store_url)
    assert again == first
    attempts = engine.store.task_attempts(ex.id, "t")
    assert [(a.attempt, a.status) for a in attempts] == [(1, TaskStatus.SUCCEEDED)]
    kinds = [e.kind for e in engine.store.events(ex.id) if e.task_id == "t"]
    assert kinds == ["task.started", "task.succeeded"]
    if agent == "shell":
        assert (ws / "runs.txt").read_text() == "ran\n"


def test_an_attempt_whose_end_was_lost_is_interrupted_and_a_new_number_runs(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ex = submit_graph(
        {"name": "lost", "tasks": [{"id": "t", "agent": "shell", "with": {"command": "true"}}]},
        workspace=ws,
    )
    ws.mkdir(parents=True, exist_ok=True)
    token = engine.store.claim(ex.id, this_owner(), 0, utcnow())
    assert token is not None
    from connectsw.core.models import TaskResult

    # Attempt 1 started (durably) on a worker that died before its end was written.
    engine.store.save_task_results(
        [TaskResult(execution_id=ex.id, task_id="t", attempt=1, status=TaskStatus.RUNNING)],
        token=token,
    )
    result = run_task(TaskCall(engine.store_url, ex.id, 0, "t", token))
    flush(engine.store_url)
    assert result is None or result["status"] == "succeeded"
    attempts = engine.store.task_attempts(ex.id, "t")
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, TaskStatus.INTERRUPTED),
        (2, TaskStatus.SUCCEEDED),
    ]
