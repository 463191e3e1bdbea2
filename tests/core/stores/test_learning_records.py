"""The execution history's statistics (core/stores/learning.py), on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectsw.core.models import (
    CheckpointSpec,
    CheckpointState,
    Decision,
    Execution,
    ExecutionStatus,
    Plan,
    Stage,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store
from tests.core.history import T0, attempt, past_execution

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


def execution(
    store: Store, status: E = E.COMPLETED, workflow: str = "wf", at: int | None = None
) -> Execution:
    """A past execution, last updated ``at`` minutes after T0 (None: now)."""
    when = T0 + timedelta(minutes=at) if at is not None else None
    return past_execution(store, plan(workflow), status, when)


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


def test_the_window_reads_the_latest_executions_of_each_workflow(store: Store) -> None:
    # Five executions of "wf", a minute apart: "write" ran 1..5 s, the oldest two after a
    # failed attempt; changes were requested at the oldest three's checkpoint.
    for i in range(5):
        ex = execution(store, E.FAILED if i < 2 else E.COMPLETED, at=i)
        first = [attempt(ex, "write", 0.5, TaskStatus.FAILED)] if i < 2 else []
        store.save_task_results([*first, attempt(ex, "write", i + 1.0, attempt=len(first) + 1)])
        if i < 3:
            decide(store, ex, Decision.REQUEST_CHANGES, 0, f"change {i}")
        else:
            decide(store, ex, Decision.APPROVE, 0)
    for i in range(3):  # another workflow's, all newer than wf's: they take none of its window
        other = execution(store, workflow="other", at=10 + i)
        store.save_task_results([attempt(other, "write", 50.0)])

    [write] = store.task_stats("wf", window=2)
    assert (write.runs, write.attempts, write.failed_attempts) == (2, 2, 0)
    assert (write.p50_seconds, write.p90_seconds) == pytest.approx((4.0, 5.0), abs=0.01)
    [write] = store.task_stats("wf", window=0)  # 0: the whole history
    assert (write.runs, write.attempts, write.failed_attempts) == (5, 7, 2)
    assert store.task_stats("wf", window=100) == store.task_stats("wf")
    each = {s.workflow: s.runs for s in store.task_stats(None, window=2)}
    assert each == {"wf": 2, "other": 2}

    [flow] = store.workflow_stats("wf", window=3)
    assert (flow.executions, flow.completed, flow.failed) == (3, 3, 0)
    assert [(w.workflow, w.executions) for w in store.workflow_stats(None, window=4)] == [
        ("other", 3),
        ("wf", 4),
    ]
    [cp] = store.checkpoint_stats("wf", window=3)
    assert (cp.decisions, cp.approved, cp.changes_requested) == (3, 2, 1)
    assert [c.feedback for c in store.change_requests("wf", window=3)] == ["change 2"]
    assert len(store.change_requests("wf")) == 3

    # An execution updated last is the latest, whenever it started.
    oldest = store.list_executions(limit=100)[-1]
    oldest.updated_at = T0 + timedelta(hours=1)
    store.transition(oldest, {oldest.status})
    [write] = store.task_stats("wf", window=1)
    assert (write.attempts, write.failed_attempts) == (2, 1)


def test_only_the_tasks_of_its_plan_are_history_with_the_agent_of_the_plan(store: Store) -> None:
    ex = execution(store)
    store.save_task_results([attempt(ex, "write", 1.0), attempt(ex, "ghost", 1.0)])
    orphan = past_execution(None, plan())  # results of an execution the store never had
    store.save_task_results([attempt(orphan, "write", 1.0)])
    assert [(s.task_id, s.agent, s.runs) for s in store.task_stats()] == [("write", "writer", 1)]
    assert [p.subject for p in store.learned_patterns() if p.pattern_type == "task_outcome"] == [
        "write"
    ]
