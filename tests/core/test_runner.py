"""The runner refuses a second start of an attempt that already has a record.

Dask recomputes a finished task whose result it lost with a dead worker (the
chaos trials found it re-running a whole chain); calling ``run_task`` twice with
the same call is exactly what that recompute does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core.engine import Engine
from connectsw.core.grants import GrantSigner, engine_signer, trust
from connectsw.core.liveness import this_owner
from connectsw.core.models import Execution, TaskStatus, utcnow
from connectsw.core.runner import TaskCall, run_task
from connectsw.core.tasklog import flush
from connectsw.licensing.certificates import new_signing_key

Submit = Callable[..., Execution]


def _granted(call: TaskCall) -> TaskCall:
    """The call with the grant the engine would give it (its key trusted here)."""
    signer = engine_signer()
    trust(signer.public_pem)
    return signer.sign([call], lifetime=60)[0]


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
    call = _granted(TaskCall(engine.store_url, ex.id, 0, "t", token))
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
    result = run_task(_granted(TaskCall(engine.store_url, ex.id, 0, "t", token)))
    flush(engine.store_url)
    assert result is None or result["status"] == "succeeded"
    attempts = engine.store.task_attempts(ex.id, "t")
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, TaskStatus.INTERRUPTED),
        (2, TaskStatus.SUCCEEDED),
    ]


# -- the orchestrator's grant (reference §1.2) ----------------------------------------


def _forged(call: TaskCall) -> TaskCall:
    """The call with its genuine grant altered to allow more attempts."""
    assert call.grant is not None
    wider = dataclasses.replace(call.grant, last_attempt=5)
    return dataclasses.replace(call, last_attempt=5, grant=wider)


def _other_key(call: TaskCall) -> TaskCall:
    """The call with a grant a forger signed with a key of their own."""
    return GrantSigner(new_signing_key()).sign([dataclasses.replace(call, grant=None)], 60)[0]


REFUSALS: dict[str, tuple[Callable[[TaskCall], TaskCall], str]] = {
    "missing": (lambda c: dataclasses.replace(c, grant=None), "no orchestrator grant"),
    "expired": (lambda c: c, "expired"),  # signed long ago (see the test)
    "forged": (_forged, "signature does not hold"),
    "another key": (_other_key, "does not trust"),
    "another task": (lambda c: dataclasses.replace(c, task_id="u"), "issued for task 't'"),
    "another execution": (lambda c: c, "issued for task 't' of execution"),
}


@pytest.mark.both_stores
@pytest.mark.parametrize("case", list(REFUSALS))
def test_an_agent_is_called_only_with_a_valid_orchestrator_grant(
    engine: Engine, submit_graph: Submit, tmp_path: Path, case: str
) -> None:
    ws = tmp_path / "ws"
    tasks = [
        {"id": tid, "agent": "shell", "with": {"command": f"echo {tid} >> runs.txt"}}
        for tid in ("t", "u")
    ]
    ex = submit_graph({"name": "granted", "tasks": tasks}, workspace=ws)
    other = submit_graph({"name": "other", "tasks": tasks}, workspace=tmp_path / "ws2")
    ws.mkdir(parents=True, exist_ok=True)
    token = engine.store.claim(ex.id, this_owner(), 0, utcnow())
    assert token is not None
    signer = engine_signer()
    trust(signer.public_pem)  # what the engine's worker plugin does on each worker
    now = time.time() - 3600 if case == "expired" else None
    granted_for = other.id if case == "another execution" else ex.id
    [granted] = signer.sign(
        [TaskCall(engine.store_url, granted_for, 0, "t", token)], lifetime=60, now=now
    )
    if case == "another execution":
        granted = dataclasses.replace(granted, execution_id=ex.id)
    change, message = REFUSALS[case]
    call = change(granted)
    result = run_task(call)
    flush(engine.store_url)
    assert result is not None and result["status"] == "failed"
    assert message in result["error"] and result["error"].startswith("refused: ")
    target = call.task_id
    [attempt] = engine.store.task_attempts(ex.id, target)
    assert attempt.status is TaskStatus.FAILED and attempt.error == result["error"]
    kinds = [e.kind for e in engine.store.events(ex.id) if e.task_id == target]
    assert kinds == ["task.failed"]  # never started
    assert not (ws / "runs.txt").exists()  # no agent code ran

    # The same task's next attempt, with a valid grant, runs normally.
    [valid] = signer.sign(
        [TaskCall(engine.store_url, ex.id, 0, target, token, first_attempt=2, last_attempt=2)],
        lifetime=60,
    )
    result = run_task(valid)
    flush(engine.store_url)
    assert result is None or result["status"] == "succeeded"
    assert (ws / "runs.txt").read_text() == f"{target}\n"
    attempts = engine.store.task_attempts(ex.id, target)
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, TaskStatus.FAILED),
        (2, TaskStatus.SUCCEEDED),
    ]


def test_a_retry_after_its_grant_expired_is_refused(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    command = "echo ran >> runs.txt; sleep 1.5; exit 1"
    ex = submit_graph(
        {"name": "late", "tasks": [{"id": "t", "agent": "shell", "with": {"command": command}}]},
        workspace=ws,
    )
    ws.mkdir(parents=True, exist_ok=True)
    token = engine.store.claim(ex.id, this_owner(), 0, utcnow())
    assert token is not None
    call = TaskCall(engine.store_url, ex.id, 0, "t", token, last_attempt=2, retry_backoff=0.01)
    signer = engine_signer()
    trust(signer.public_pem)
    [granted] = signer.sign([call], lifetime=1.0)  # valid for the first attempt only
    result = run_task(granted)
    flush(engine.store_url)
    assert result is not None and "expired" in result["error"]
    attempts = engine.store.task_attempts(ex.id, "t")
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, TaskStatus.FAILED),
        (2, TaskStatus.FAILED),
    ]
    assert attempts[1].error is not None and attempts[1].error.startswith("refused: ")
    assert (ws / "runs.txt").read_text() == "ran\n"  # the second attempt never ran


def test_an_agent_writing_into_git_fails_its_task_with_the_reason(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    """Trial 5 item 12: a plugin agent's `ctx.write(".git/hooks/post-commit")` succeeded
    with an artifact git never commits (and a hook the next commit would run)."""
    from connectsw.core.models import ExecutionStatus

    ws = tmp_path / "ws"
    task = {"id": "hook", "agent": "notes", "with": {"path": ".git/hooks/post-commit"}}
    ex = submit_graph({"name": "hooks", "tasks": [task]}, workspace=ws)
    assert engine.run(ex.id).status is ExecutionStatus.FAILED
    [attempt] = engine.store.task_attempts(ex.id, "hook")
    assert attempt.status is TaskStatus.FAILED and attempt.error is not None
    assert "'.git/hooks/post-commit' is inside .git" in attempt.error
    assert not (ws / ".git" / "hooks" / "post-commit").exists()


def test_an_outputs_commit_past_the_tasks_timeout_times_the_attempt_out(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    """Trial 8, F1: a task with ``timeout: 3`` whose output is a 4 GB sparse file ran
    205 s and failed "git commit timed out after 120s". The commit is the attempt's."""
    from connectsw.core.models import ExecutionStatus

    ws = tmp_path / "ws"
    task = {
        "id": "big",
        "agent": "shell",
        "timeout": 2,
        "with": {"command": "truncate -s 4G big.bin", "outputs": ["big.bin"]},
    }
    ex = submit_graph({"name": "sparse", "tasks": [task]}, workspace=ws)
    start = time.monotonic()
    assert engine.run(ex.id).status is ExecutionStatus.FAILED
    assert time.monotonic() - start < 30
    [attempt] = engine.store.task_attempts(ex.id, "big")
    assert attempt.status is TaskStatus.FAILED, attempt
    assert attempt.error == "timed out after 2s (committing its outputs)"
