"""The execution history's statistics (core/stores/learning.py), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectsw.core.models import (
    CheckpointSpec,
    CheckpointState,
    Decision,
    Execution,
    ExecutionStatus,
    Plan,
    Request,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
E = ExecutionStatus


def plan(workflow: str = "wf", name: str = "proj") -> Plan:
    return Plan(
        name=name,
        workflow=workflow,
        tasks=[
            TaskSpec(id="write", agent="writer"),
            TaskSpec(id="check", agent="checker", needs=["write"], stage=1),
        ],
        stages=[
            Stage(
                index=0,
                name="one",
                task_ids=["write"],
                checkpoint=CheckpointSpec(type="written", question="ok?"),
            ),
            Stage(index=1, name="final", task_ids=["check"]),
        ],
    )


def execution(store: Store, status: E = E.COMPLETED, workflow: str = "wf") -> Execution:
    ex = Execution(request=Request(command="run", args=["x"]), plan=plan(workflow), workspace="/w")
    ex.status = status
    store.create_execution(ex)
    return ex


def attempt(
    ex: Execution,
    task: str,
    seconds: float | None,
    status: TaskStatus = TaskStatus.SUCCEEDED,
    round: int = 0,
    attempt: int = 1,
) -> TaskResult:
    return TaskResult(
        execution_id=ex.id,
        task_id=task,
        round=round,
        attempt=attempt,
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds) if seconds is not None else None,
    )


def decide(
    store: Store, ex: Execution, decision: Decision, round: int = 0, feedback: str | None = None
) -> None:
    cp = CheckpointState(
        execution_id=ex.id,
        stage=0,
        round=round,
        type="written",
        question="ok?",
        decision=decision,
        feedback=feedback,
    )
    store.transition(ex, {ex.status}, checkpoint=cp)


def test_task_statistics_runs_retries_and_percentiles(store: Store) -> None:
    durations = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    for seconds in durations:
        ex = execution(store)
        store.save_task_results([attempt(ex, "write", seconds), attempt(ex, "check", 0.5)])
    # One more run of "write" that failed once, then succeeded (a retry), and one that
    # failed twice; an interrupted and a running attempt are no outcome.
    ex = execution(store, E.FAILED)
    store.save_task_results(
        [
            attempt(ex, "write", 100.0, TaskStatus.FAILED),
            attempt(ex, "write", 11.0, attempt=2),
            attempt(ex, "check", 0.5, TaskStatus.FAILED),
            attempt(ex, "check", 0.5, TaskStatus.FAILED, attempt=2),
            attempt(ex, "check", None, TaskStatus.INTERRUPTED, attempt=3),
        ]
    )
    execution(store, E.EXECUTING)  # nothing ran yet
    other = execution(store, workflow="other")
    store.save_task_results([attempt(other, "write", 50.0)])

    stats = {(s.workflow, s.task_id): s for s in store.task_stats()}
    assert set(stats) == {("wf", "write"), ("wf", "check"), ("other", "write")}
    write = stats["wf", "write"]
    assert (write.agent, write.runs, write.succeeded_runs) == ("writer", 11, 11)
    assert (write.attempts, write.failed_attempts, write.retries) == (12, 1, 1)
    # Succeeded durations 1..11 s: nearest rank 6 of 11 is 6 s, rank 10 of 11 is 10 s.
    assert write.p50_seconds == pytest.approx(6.0, abs=0.01)
    assert write.p90_seconds == pytest.approx(10.0, abs=0.01)
    assert write.failure_rate == pytest.approx(1 / 12)
    check = stats["wf", "check"]
    assert (check.runs, check.succeeded_runs, check.attempts, check.failed_attempts) == (
        11,
        10,
        12,
        2,
    )
    assert check.success_rate == pytest.approx(10 / 11)
    assert check.p50_seconds == pytest.approx(0.5, abs=0.01)
    assert [s.task_id for s in store.task_stats("other")] == ["write"]
    assert store.task_stats("nothing") == []

    flows = {w.workflow: w for w in store.workflow_stats()}
    assert (flows["wf"].executions, flows["wf"].completed, flows["wf"].failed) == (11, 10, 1)
    assert flows["wf"].success_rate == pytest.approx(10 / 11)
    assert store.workflows_seen() == ["other", "wf"]


def test_checkpoint_decisions_and_change_requests(store: Store) -> None:
    for feedback in ("Add a Security section", "  Add a Security section ", "Shorter"):
        ex = execution(store, E.AWAITING_CHECKPOINT)
        decide(store, ex, Decision.REQUEST_CHANGES, 0, feedback)
        decide(store, ex, Decision.APPROVE, 1)
    ex = execution(store, E.AWAITING_CHECKPOINT)
    decide(store, ex, Decision.CANCEL, 0)
    undecided = execution(store, E.AWAITING_CHECKPOINT)
    waiting = CheckpointState(execution_id=undecided.id, stage=0, type="written", question="?")
    store.transition(undecided, {E.AWAITING_CHECKPOINT}, checkpoint=waiting)

    [cp] = store.checkpoint_stats("wf")
    assert (cp.checkpoint, cp.decisions, cp.approved, cp.changes_requested, cp.cancelled) == (
        "written",
        7,
        3,
        3,
        1,
    )
    assert cp.approval_rate == pytest.approx(3 / 7)
    top = store.change_requests("wf")
    assert [(c.feedback, c.count) for c in top] == [("Add a Security section", 2), ("Shorter", 1)]
    assert store.change_requests("wf", limit=1)[0].checkpoint == "written"


def test_learned_patterns_view(store: Store) -> None:
    ex = execution(store, E.COMPLETED)
    store.save_task_results([attempt(ex, "write", 2.0), attempt(ex, "check", 1.0)])
    decide(store, ex, Decision.REQUEST_CHANGES, 0, "Add a Security section")
    decide(store, ex, Decision.APPROVE, 1)
    failed = execution(store, E.FAILED)
    store.save_task_results(
        [attempt(failed, "write", 1.0), attempt(failed, "check", 1.0, TaskStatus.FAILED)]
    )

    rows = {(p.pattern_type, p.subject, p.detail): p for p in store.learned_patterns()}
    assert rows["workflow_outcome", "wf", None].frequency == 2
    assert rows["workflow_outcome", "wf", None].success_rate == pytest.approx(50.0)
    check = rows["task_outcome", "check", None]
    assert (check.agent, check.frequency, check.success_rate) == ("checker", 2, 50.0)
    assert rows["task_outcome", "write", None].success_rate == pytest.approx(100.0)
    assert rows["checkpoint_approval", "written", None].success_rate == pytest.approx(50.0)
    change = rows["change_request", "written", "Add a Security section"]
    assert (change.frequency, change.success_rate) == (1, None)
