"""Contract of the Store interface, run against every backend.

A backend is one entry of ``BACKENDS``: a function that, given the test's
request, returns an ``open()`` callable; each call opens a new store instance
(new connections, as another process would) on the same storage. PostgreSQL runs
on the real server that scripts/test starts, one fresh schema per test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectsw.core.errors import (
    ConfigError,
    Conflict,
    LeaseLost,
    NotFound,
    StoreError,
    UnwritableRecord,
)
from connectsw.core.models import (
    CheckpointSpec,
    CheckpointState,
    Decision,
    Event,
    Execution,
    ExecutionStatus,
    ExecutionUsage,
    GateResult,
    LLMUsage,
    Plan,
    Request,
    RuleResult,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store, open_store
from connectsw.core.stores.base import Lease
from connectsw.core.stores.postgres import PostgresStore
from connectsw.core.stores.sqlite import SQLiteStore

Opener = Callable[[], Store]


T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def make_plan() -> Plan:
    return Plan(
        name="p",
        workflow="task-graph",
        tasks=[TaskSpec(id="a", agent="noop"), TaskSpec(id="b", agent="noop", stage=1)],
        stages=[
            Stage(
                index=0,
                name="one",
                task_ids=["a"],
                checkpoint=CheckpointSpec(type="one", question="ok?"),
            ),
            Stage(index=1, name="final", task_ids=["b"], gates=["tests-pass"]),
        ],
    )


def make_execution(**kw: object) -> Execution:
    return Execution(
        request=Request(command="run", args=["g.yaml"]), plan=make_plan(), workspace="/w", **kw
    )


def result(eid: str, task: str, round: int = 0, attempt: int = 1, **kw: object) -> TaskResult:
    kw.setdefault("status", TaskStatus.SUCCEEDED)
    return TaskResult(execution_id=eid, task_id=task, round=round, attempt=attempt, **kw)


def event(eid: str, kind: str = "task.started", **kw: object) -> Event:
    return Event(execution_id=eid, kind=kind, **kw)


# -- executions ------------------------------------------------------------------


def test_open_store_by_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a' / 'x.db'}")
    try:
        assert isinstance(store, SQLiteStore)
        assert (tmp_path / "a" / "x.db").exists()
    finally:
        store.close()


def test_open_postgres_store_by_url(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.list_executions() == []
    finally:
        store.close()


def test_unreachable_postgres_is_one_line_without_the_password() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as info:
        open_store(f"postgresql://bob:s3cret@127.0.0.1:{port}/db")
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith(
        f"cannot open the PostgreSQL store at postgresql://bob:***@127.0.0.1:{port}/db"
    )


def test_unknown_store_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a supported store URL"):
        open_store("mysql://x")


E = ExecutionStatus


def test_create_and_get_execution(store: Store) -> None:
    execution = make_execution(feedback=["be brief"])
    created = store.create_execution(execution, [event(execution.id, "execution.created")])
    assert [e.kind for e in created] == ["execution.created"] and created[0].seq > 0
    loaded = store.get_execution(execution.id)
    assert loaded == execution
    assert loaded is not execution
    assert loaded.plan.checkpoints[0].type == "one"
    assert (loaded.owner, loaded.heartbeat_at, loaded.lease_token) == (None, None, 0)
    assert store.get_execution("exec_missing") is None
    assert store.execution_status(execution.id) is E.PENDING
    assert store.execution_status("exec_missing") is None
    assert store.lease(execution.id) == Lease(owner=None, heartbeat_at=None, token=0)
    assert store.lease("exec_missing") is None


def test_create_twice_is_a_conflict(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    with pytest.raises(Conflict, match=f"execution {execution.id} already exists"):
        store.create_execution(execution, [event(execution.id)])
    assert store.get_execution(execution.id) == execution
    assert store.events(execution.id) == []


def test_transition_updates_and_returns_events(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    execution.status = E.AWAITING_CHECKPOINT
    execution.stage = 1
    execution.error = "x"
    saved = store.transition(
        execution, {E.PENDING}, [event(execution.id, "stage.finished"), event(execution.id, "cp")]
    )
    assert [e.kind for e in saved] == ["stage.finished", "cp"]
    assert 0 < saved[0].seq < saved[1].seq
    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert loaded.status is E.AWAITING_CHECKPOINT
    assert (loaded.stage, loaded.error) == (1, "x")
    assert [e.seq for e in store.events(execution.id)] == [e.seq for e in saved]
    execution.status = E.EXECUTING
    assert store.transition(execution, [E.PENDING, E.AWAITING_CHECKPOINT]) == []
    assert store.execution_status(execution.id) is E.EXECUTING


def test_transition_from_an_unexpected_status_is_a_conflict_and_writes_nothing(
    open_new: Opener,
) -> None:
    runner, canceller = open_new(), open_new()
    execution = make_execution(status=E.EXECUTING)
    runner.create_execution(execution)
    cancelled = canceller.get_execution(execution.id)
    assert cancelled is not None
    cancelled.status = E.CANCELLED
    canceller.transition(cancelled, {E.EXECUTING}, [event(execution.id, "execution.cancelled")])
    # The running process, unaware, writes its next state: refused, nothing written.
    execution.status = E.AWAITING_CHECKPOINT
    execution.error = "late"
    with pytest.raises(Conflict) as info:
        runner.transition(
            execution,
            {E.EXECUTING},
            [event(execution.id, "checkpoint.reached")],
            checkpoint=checkpoint(execution.id, 0),
            gate=(0, GateResult(stage=0, passed=True, score=1.0)),
        )
    assert str(info.value) == f"execution {execution.id} is already cancelled"
    assert info.value.exit_code == 5
    loaded = runner.get_execution(execution.id)
    assert loaded is not None and (loaded.status, loaded.error) == (E.CANCELLED, None)
    assert [e.kind for e in runner.events(execution.id)] == ["execution.cancelled"]
    assert runner.checkpoints(execution.id) == []
    assert runner.gate_result(execution.id, 0, 0) is None


def test_transition_of_a_missing_execution_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="execution exec_missing not found"):
        store.transition(make_execution(id="exec_missing"), {E.PENDING}, [event("exec_missing")])
    assert store.events("exec_missing") == []


def test_list_executions_most_recently_updated_first(store: Store) -> None:
    executions = [make_execution(updated_at=T0 + timedelta(minutes=i)) for i in range(4)]
    for e in executions:
        store.create_execution(e)
    ids = [e.id for e in executions]
    assert [e.id for e in store.list_executions()] == ids[::-1]
    assert [e.id for e in store.list_executions(limit=2)] == [ids[3], ids[2]]
    executions[0].updated_at = T0 + timedelta(hours=1)
    store.transition(executions[0], {E.PENDING})
    assert [e.id for e in store.list_executions()] == [ids[0], ids[3], ids[2], ids[1]]


# -- the lease and fencing --------------------------------------------------------


def test_claim_is_compare_and_set_on_the_token(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    eid = execution.id
    assert store.claim(eid, "alice", 0, T0) == 1
    assert store.claim(eid, "bob", 0, T0) is None  # alice moved the token
    assert store.lease(eid) == Lease(owner="alice", heartbeat_at=T0, token=1)
    loaded = store.get_execution(eid)
    assert loaded is not None and (loaded.owner, loaded.heartbeat_at, loaded.lease_token) == (
        "alice",
        T0,
        1,
    )
    later = T0 + timedelta(seconds=1)
    assert store.claim(eid, "bob", 1, later) == 2  # take over
    assert store.lease(eid) == Lease(owner="bob", heartbeat_at=later, token=2)
    assert not store.release(eid, "alice", 1, later)  # an old token releases nothing
    assert store.release(eid, "bob", 2, later)
    assert store.lease(eid) == Lease(owner=None, heartbeat_at=later, token=2)
    assert not store.heartbeat(eid, "bob", 2, later)  # released
    assert store.claim(eid, "carol", 2, later) == 3
    assert store.claim("exec_missing", "alice", 0, T0) is None


def test_transition_and_claim_keep_each_others_columns(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    token = store.claim(execution.id, "alice", 0, T0)
    execution.status = E.EXECUTING  # this copy still says owner None, token 0
    store.transition(execution, {E.PENDING}, token=token)
    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert (loaded.owner, loaded.lease_token, loaded.status) == ("alice", 1, E.EXECUTING)


def test_claim_races_have_one_winner(open_new: Opener) -> None:
    store = open_new()
    execution = make_execution()
    store.create_execution(execution)
    wins: list[tuple[str, int]] = []
    barrier = threading.Barrier(8)

    def contend(owner: str) -> None:
        s = open_new()
        barrier.wait()
        token = s.claim(execution.id, owner, 0, T0)
        if token is not None:
            wins.append((owner, token))

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.lease(execution.id) == Lease(owner=wins[0][0], heartbeat_at=T0, token=1)


def test_heartbeat_only_by_the_token_holder(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    assert not store.heartbeat(execution.id, "alice", 0, T0)  # nobody owns it
    token = store.claim(execution.id, "alice", 0, T0)
    assert token == 1
    later = T0 + timedelta(seconds=30)
    assert store.heartbeat(execution.id, "alice", token, later)
    assert store.lease(execution.id).heartbeat_at == later  # type: ignore[union-attr]
    assert not store.heartbeat(execution.id, "bob", token, later + timedelta(seconds=1))
    assert not store.heartbeat(execution.id, "alice", 0, later + timedelta(seconds=1))
    assert store.lease(execution.id).heartbeat_at == later  # type: ignore[union-attr]


def test_a_gate_process_is_recorded_fenced_and_cleared(store: Store) -> None:
    execution = make_execution(status=E.EXECUTING)
    store.create_execution(execution)
    eid = execution.id
    assert store.gate_process(eid) is None
    token = store.claim(eid, "a", 0, T0)
    assert token == 1
    ref = {"host": "h", "pid": 12, "pgid": 12, "start_time": 345}
    store.set_gate_process(eid, ref, token=token)
    assert store.gate_process(eid) == ref
    assert store.claim(eid, "b", token, T0 + timedelta(minutes=1)) == 2  # a takeover
    with pytest.raises(LeaseLost):
        store.set_gate_process(eid, None, token=token)
    assert store.gate_process(eid) == ref  # the new owner finds it and ends it
    store.set_gate_process(eid, None, token=2)
    assert store.gate_process(eid) is None
    with pytest.raises(NotFound):
        store.set_gate_process("exec_000000000000", None)


def test_a_process_whose_lease_was_taken_over_writes_nothing(open_new: Opener) -> None:
    a, b = open_new(), open_new()
    execution = make_execution(status=E.EXECUTING)
    a.create_execution(execution)
    eid = execution.id
    token_a = a.claim(eid, "a", 0, T0)
    assert token_a == 1
    a.save_task_results([result(eid, "t0")], [event(eid, task_id="t0")], token=token_a)
    # A is stopped past its lease; B takes over.
    token_b = b.claim(eid, "b", token_a, T0 + timedelta(minutes=1))
    assert token_b == 2
    before = (b.get_execution(eid), b.task_attempts(eid, "t1"), b.events(eid), b.checkpoints(eid))
    # A wakes up: each of its writes is refused.
    execution.status = E.AWAITING_CHECKPOINT
    with pytest.raises(LeaseLost, match=f"lost the lease on execution {eid}: b took it over"):
        a.transition(
            execution,
            {E.EXECUTING},
            [event(eid, "checkpoint.reached")],
            token=token_a,
            checkpoint=checkpoint(eid, 0),
        )
    with pytest.raises(LeaseLost):
        a.save_task_results([result(eid, "t1")], [event(eid, task_id="t1")], token=token_a)
    with pytest.raises(LeaseLost):
        a.save_task_results([result(eid, "t1")], token=token_a)
    with pytest.raises(LeaseLost):
        a.add_events([event(eid, "note")], token=token_a)
    assert not a.heartbeat(eid, "a", token_a, T0 + timedelta(minutes=2))
    assert not a.release(eid, "a", token_a, T0 + timedelta(minutes=2))
    assert (
        b.get_execution(eid),
        b.task_attempts(eid, "t1"),
        b.events(eid),
        b.checkpoints(eid),
    ) == (before)
    assert b.lease(eid) == Lease(owner="b", heartbeat_at=T0 + timedelta(minutes=1), token=2)
    # B's writes go through; unfenced writes (no token) too.
    assert b.save_task_results([result(eid, "t1")], token=token_b) == []
    assert b.add_events([event(eid, "note")], token=token_b)[0].seq > 0
    assert [r.task_id for r in b.task_attempts(eid, "t1")] == ["t1"]


def test_a_fenced_write_is_for_one_execution(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    with pytest.raises(ValueError, match="one execution"):
        store.save_task_results([result(e.id, "a")], [event("exec_other")], token=0)
    with pytest.raises(NotFound):
        store.add_events([event("exec_missing")], token=0)


# -- checkpoints and decisions (fault 3) ---------------------------------------------


def checkpoint(eid: str, stage: int, round: int = 0, **kw: object) -> CheckpointState:
    return CheckpointState(
        execution_id=eid, stage=stage, round=round, type=f"s{stage}", question="ok?", **kw
    )


def awaiting(store: Store) -> Execution:
    """An execution waiting at the checkpoint of stage 0."""
    execution = make_execution()
    store.create_execution(execution)
    execution.status = E.AWAITING_CHECKPOINT
    store.transition(execution, {E.PENDING}, checkpoint=checkpoint(execution.id, 0))
    return execution


def decide(
    store: Store, execution: Execution, decision: Decision, feedback: str | None = None
) -> list[Event]:
    """What ``connectsw approve`` / ``request-changes`` do: one fenced-free decision."""
    execution = execution.model_copy(deep=True)
    execution.status = E.EXECUTING if decision is Decision.APPROVE else E.FAILED
    decided = checkpoint(
        execution.id, 0, decision=decision, feedback=feedback, decided_at=T0 + timedelta(hours=1)
    )
    return store.transition(
        execution,
        {E.AWAITING_CHECKPOINT},
        [event(execution.id, "checkpoint.decided", data={"decision": decision.value})],
        checkpoint=decided,
        decide=True,
    )


def test_a_decision_is_recorded_once(store: Store) -> None:
    execution = awaiting(store)
    assert [c.decision for c in store.checkpoints(execution.id)] == [None]
    decide(store, execution, Decision.REQUEST_CHANGES, "shorter")
    [cp] = store.checkpoints(execution.id)
    assert (cp.decision, cp.feedback) == (Decision.REQUEST_CHANGES, "shorter")
    with pytest.raises(Conflict) as info:
        decide(store, execution, Decision.APPROVE)
    assert str(info.value) == f"execution {execution.id} was already decided (now failed)"
    assert info.value.exit_code == 5
    [cp] = store.checkpoints(execution.id)
    assert cp.decision is Decision.REQUEST_CHANGES


def test_a_decided_checkpoint_is_not_decided_again_whatever_the_status(store: Store) -> None:
    execution = awaiting(store)
    decide(store, execution, Decision.APPROVE)
    back = execution.model_copy(deep=True)  # e.g. a status that allows the decision again
    back.status = E.AWAITING_CHECKPOINT
    store.transition(back, {E.EXECUTING})
    events_before = store.events(execution.id)
    with pytest.raises(Conflict) as info:
        decide(store, execution, Decision.REQUEST_CHANGES)
    assert str(info.value) == (
        f"the checkpoint at stage 0 (round 0) of execution {execution.id}"
        " was already decided: approve"
    )
    assert store.execution_status(execution.id) is E.AWAITING_CHECKPOINT  # rolled back
    assert store.events(execution.id) == events_before
    assert store.checkpoints(execution.id)[0].decision is Decision.APPROVE


def test_deciding_a_missing_checkpoint_is_not_found(store: Store) -> None:
    execution = make_execution(status=E.AWAITING_CHECKPOINT)
    store.create_execution(execution)
    with pytest.raises(NotFound, match="no checkpoint at stage 0"):
        decide(store, execution, Decision.APPROVE)
    assert store.execution_status(execution.id) is E.AWAITING_CHECKPOINT


def test_two_decisions_at_once_exactly_one_wins(open_new: Opener) -> None:
    """approve and request-changes started at the same moment: one wins, one conflicts."""
    store = open_new()
    deciders = {Decision.APPROVE: open_new(), Decision.REQUEST_CHANGES: open_new()}
    for _ in range(25):
        execution = awaiting(store)
        barrier = threading.Barrier(2)
        outcomes: dict[Decision, str] = {}

        def run(
            decision: Decision,
            execution: Execution = execution,
            barrier: threading.Barrier = barrier,
            outcomes: dict[Decision, str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                decide(deciders[decision], execution, decision)
                outcomes[decision] = "won"
            except Conflict as exc:
                outcomes[decision] = str(exc)

        threads = [threading.Thread(target=run, args=(d,)) for d in deciders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [d for d, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == 1, outcomes
        [loser] = set(deciders) - set(winners)
        assert "already decided" in outcomes[loser]
        [cp] = store.checkpoints(execution.id)
        assert cp.decision is winners[0]
        decided = [e for e in store.events(execution.id) if e.kind == "checkpoint.decided"]
        assert [e.data["decision"] for e in decided] == [winners[0].value]


def test_checkpoints_saved_replaced_and_listed(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    for cp in (checkpoint(e.id, 1), checkpoint(e.id, 0, round=1), checkpoint(e.id, 0)):
        store.transition(e, {E.PENDING}, checkpoint=cp)
    assert [(c.stage, c.round) for c in store.checkpoints(e.id)] == [(0, 0), (0, 1), (1, 0)]
    replaced = checkpoint(e.id, 0, decision=Decision.REQUEST_CHANGES, feedback="x", decided_at=T0)
    store.transition(e, {E.PENDING}, checkpoint=replaced)  # without decide: replaced as is
    listed = store.checkpoints(e.id)
    assert len(listed) == 3
    assert listed[0] == replaced
    assert listed[1].decision is None
    assert store.checkpoints("exec_missing") == []


def test_gate_results(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    failed = GateResult(
        stage=1,
        passed=False,
        score=0.0,
        rules=[RuleResult(rule="tests-pass", passed=False, score=0.0, remediation="fix")],
    )
    store.transition(e, {E.PENDING}, gate=(0, failed))
    assert store.gate_result(e.id, 1, 0) == failed
    assert store.gate_result(e.id, 1, 1) is None
    assert store.gate_result(e.id, 0, 0) is None
    passed = GateResult(stage=1, passed=True, score=1.0)
    store.transition(e, {E.PENDING}, gate=(0, passed))  # replaces
    assert store.gate_result(e.id, 1, 0) == passed
    store.transition(e, {E.PENDING}, gate=(1, failed))
    assert store.gate_result(e.id, 1, 1) == failed
    assert store.gate_result(e.id, 1, 0) == passed


# -- task results ------------------------------------------------------------------


def test_save_task_results_replaces_same_attempt(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    store.save_task_results([result(e.id, "a", status=TaskStatus.RUNNING)])
    events = store.save_task_results(
        [result(e.id, "a", status=TaskStatus.SUCCEEDED, summary="done", outputs={"n": 1})],
        [event(e.id, "task.succeeded", task_id="a")],
    )
    assert events[0].seq > 0 and events[0].task_id == "a"
    attempts = store.task_attempts(e.id, "a")
    assert len(attempts) == 1
    assert attempts[0].status is TaskStatus.SUCCEEDED
    assert attempts[0].summary == "done"
    assert attempts[0].outputs == {"n": 1}
    assert store.save_task_results([]) == []


def test_start_attempt_writes_once_then_returns_the_record(store: Store) -> None:
    e = make_execution(status=E.EXECUTING)
    store.create_execution(e)
    token = store.claim(e.id, "a", 0, T0)
    running = result(e.id, "a", attempt=2, status=TaskStatus.RUNNING)
    existing, written = store.start_attempt(running, [event(e.id, task_id="a")], token=token)
    assert existing is None and [ev.kind for ev in written] == ["task.started"]
    assert store.attempt_record(e.id, "a", 0, 2) == running
    # A second start of attempt 2 (Dask recomputing it) is refused with its record.
    store.save_task_results([result(e.id, "a", attempt=2)], token=token)
    again, written = store.start_attempt(running, [event(e.id, task_id="a")], token=token)
    assert again is not None and again.status is TaskStatus.SUCCEEDED and written == []
    # So is a start of an earlier attempt: the latest record answers.
    earlier = result(e.id, "a", attempt=1, status=TaskStatus.RUNNING)
    again, written = store.start_attempt(earlier, [], token=token)
    assert again is not None and again.attempt == 2 and written == []
    assert store.attempt_record(e.id, "a", 0, 1) == again
    assert store.attempt_record(e.id, "a", 0, 3) is None
    assert [r.attempt for r in store.task_attempts(e.id, "a")] == [2]
    with pytest.raises(LeaseLost):
        store.start_attempt(result(e.id, "b", status=TaskStatus.RUNNING), [], token=token + 1)


def test_a_record_and_its_events_are_written_once(store: Store) -> None:
    """A dependency's records may reach the store twice (its own task log, and a
    dependent's in another process that wrote them ahead of its own, issue 5): an
    attempt's final record is never replaced and its events are not repeated; a start
    is not written over an end, nor its event over a stored start (its record may
    gain its process group); repeats within one write count once."""
    e = make_execution()
    store.create_execution(e)

    def ev(task: str, kind: str, attempt: int = 1) -> Event:
        return event(e.id, kind, task_id=task, data={"attempt": attempt, "round": 0})

    a_done = result(e.id, "a", summary="first")
    a_events = [ev("a", "task.started"), ev("a", "task.succeeded")]
    assert len(store.save_task_results([a_done], a_events)) == 2
    # The same records again (another writer), and a different final one: nothing.
    assert store.save_task_results([a_done], a_events) == []
    late = result(e.id, "a", status=TaskStatus.FAILED, error="late")
    assert store.save_task_results([late], [ev("a", "task.failed")]) == []
    start = result(e.id, "a", status=TaskStatus.RUNNING)
    assert store.save_task_results([start], [ev("a", "task.started")]) == []
    assert [r.summary for r in store.task_attempts(e.id, "a")] == ["first"]
    # b's start was written (a durable start); its end comes with the start's event again.
    b_start = result(e.id, "b", status=TaskStatus.RUNNING)
    store.save_task_results([b_start], [ev("b", "task.started")])
    group = {"host": "h", "pid": 7, "pgid": 7, "start_time": 1}
    spawned = b_start.model_copy(update={"process": group})
    assert store.save_task_results([spawned], [ev("b", "task.started")]) == []
    assert store.task_attempts(e.id, "b")[0].process == group
    written = store.save_task_results(
        [result(e.id, "b")], [ev("b", "task.started"), ev("b", "task.succeeded")]
    )
    assert [w.kind for w in written] == ["task.succeeded"]
    # Twice in one write (two dependents carried it): once. Other attempts are apart.
    c = [result(e.id, "c", attempt=2), result(e.id, "c", attempt=2)]
    c_events = [ev("c", "task.succeeded", 2), ev("c", "task.succeeded", 2)]
    c_events.append(ev("c", "task.retrying", 1))
    written = store.save_task_results([result(e.id, "c", status=TaskStatus.FAILED), *c], c_events)
    assert [(w.kind, w.data["attempt"]) for w in written] == [
        ("task.succeeded", 2),
        ("task.retrying", 1),
    ]
    kinds = [(x.task_id, x.kind) for x in store.events(e.id)]
    assert kinds == [
        ("a", "task.started"),
        ("a", "task.succeeded"),
        ("b", "task.started"),
        ("b", "task.succeeded"),
        ("c", "task.succeeded"),
        ("c", "task.retrying"),
    ]
    assert [r.status for r in store.task_attempts(e.id, "c")] == [
        TaskStatus.FAILED,
        TaskStatus.SUCCEEDED,
    ]


def test_task_results_latest_attempt_per_task_and_round(store: Store) -> None:
    e, other = make_execution(), make_execution()
    store.create_execution(e)
    store.create_execution(other)
    store.save_task_results([result(e.id, "a", 0, 1, status=TaskStatus.FAILED, error="boom")])
    store.save_task_results([result(e.id, "a", 0, 2)])
    store.save_task_results([result(e.id, "b", 0, 1)])
    store.save_task_results([result(e.id, "a", 1, 1, status=TaskStatus.RUNNING)])
    store.save_task_results([result(other.id, "a", 5, 9)])

    def keyed(results: list[TaskResult]) -> dict[str, tuple[int, int, TaskStatus]]:
        assert all(r.execution_id == e.id for r in results)
        return {r.task_id: (r.round, r.attempt, r.status) for r in results}

    assert keyed(store.task_results(e.id, round=0)) == {
        "a": (0, 2, TaskStatus.SUCCEEDED),
        "b": (0, 1, TaskStatus.SUCCEEDED),
    }
    assert keyed(store.task_results(e.id, round=1)) == {"a": (1, 1, TaskStatus.RUNNING)}
    assert len(store.task_results(e.id, round=0)) == 2
    # round=None: each task's latest round, then its latest attempt
    assert keyed(store.task_results(e.id)) == {
        "a": (1, 1, TaskStatus.RUNNING),
        "b": (0, 1, TaskStatus.SUCCEEDED),
    }
    assert store.task_results(e.id, round=7) == []
    assert store.task_results("exec_missing") == []


def test_task_results_in_write_order(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    for task in ("c", "a", "b"):
        store.save_task_results([result(e.id, task, status=TaskStatus.RUNNING)])
    store.save_task_results([result(e.id, "c")])  # rewritten last
    assert [r.task_id for r in store.task_results(e.id)] == ["a", "b", "c"]
    assert [r.task_id for r in store.task_results(e.id, round=0)] == ["a", "b", "c"]


def test_task_attempts_oldest_first(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    for rnd, attempt in [(1, 2), (0, 2), (1, 1), (0, 1)]:
        store.save_task_results([result(e.id, "a", rnd, attempt)])
    store.save_task_results([result(e.id, "b", 0, 3)])
    assert [(r.round, r.attempt) for r in store.task_attempts(e.id, "a")] == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert store.task_attempts(e.id, "zzz") == []


def test_llm_usage_sums_every_attempt_and_round_per_task(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    assert store.llm_usage(e.id) == ExecutionUsage()
    u = LLMUsage(calls=2, tokens_in=100, tokens_out=40, cost=0.25)
    store.save_task_results(
        [
            result(e.id, "a", attempt=1, status=TaskStatus.FAILED, usage=u),
            result(e.id, "a", attempt=2, usage=LLMUsage(calls=1, tokens_in=10, tokens_out=5)),
            result(e.id, "a", round=1, usage=u),
            result(e.id, "b"),  # no model call
        ]
    )
    # Replacing an attempt's record replaces its usage (no double count).
    store.save_task_results([result(e.id, "a", round=1, usage=u)])
    usage = store.llm_usage(e.id)
    assert usage.tasks == {"a": LLMUsage(calls=5, tokens_in=210, tokens_out=85, cost=0.5)}
    assert (usage.calls, usage.tokens_in, usage.tokens_out) == (5, 210, 85)
    assert usage.cost == pytest.approx(0.5)
    assert store.task_attempts(e.id, "a")[0].usage == u
    assert store.llm_usage("exec_000000000000") == ExecutionUsage()


def test_running_attempts(store: Store) -> None:
    e, other = make_execution(), make_execution()
    store.create_execution(e)
    process = {"pid": 123, "pgid": 123}
    store.save_task_results(
        [
            result(e.id, "a", 0, 1, status=TaskStatus.RUNNING, process=process),
            result(e.id, "b", 0, 1, status=TaskStatus.RUNNING),
            result(e.id, "c", 1, 2, status=TaskStatus.RUNNING),
            result(e.id, "d", 0, 1),
            result(other.id, "a", 0, 1, status=TaskStatus.RUNNING),
        ]
    )
    store.save_task_results([result(e.id, "b", 0, 1, status=TaskStatus.INTERRUPTED)])
    running = store.running_attempts(e.id)
    assert [(r.task_id, r.round, r.attempt) for r in running] == [("a", 0, 1), ("c", 1, 2)]
    assert running[0].process == process
    assert store.running_attempts("exec_missing") == []


class Opaque:
    """Something JSON cannot represent."""

    def __repr__(self) -> str:
        # A test id the same in every process (pytest-xdist's workers collect alike).
        return "Opaque()"


@pytest.mark.parametrize(
    "outputs", [{"x": Opaque()}, {"x": "nul \x00 byte"}, {"x": "\udcff"}], ids=str
)
def test_an_unwritable_record_is_refused_before_writing(store: Store, outputs: object) -> None:
    e = make_execution()
    store.create_execution(e)
    good = result(e.id, "ok")
    bad = result(e.id, "weird", outputs=outputs)
    with pytest.raises(UnwritableRecord) as info:
        store.save_task_results([good, bad], [event(e.id, task_id="weird")])
    message = str(info.value)
    assert message.startswith(f"cannot store the result of task weird (execution {e.id}): ")
    assert "\n" not in message
    assert isinstance(info.value, StoreError) and info.value.code == "unwritable_record"
    assert store.task_results(e.id) == [] and store.events(e.id) == []
    store.save_task_results([good])  # the store is not poisoned
    assert [r.task_id for r in store.task_results(e.id)] == ["ok"]
    with pytest.raises(UnwritableRecord, match="cannot store an event of task weird"):
        store.add_events([event(e.id, task_id="weird", data={"o": outputs})])


def test_a_backslash_u0000_text_is_not_a_nul(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    store.save_task_results([result(e.id, "a", outputs={"x": "\\u0000 and \\\\u0000"})])
    assert store.task_results(e.id)[0].outputs == {"x": "\\u0000 and \\\\u0000"}


# -- events ----------------------------------------------------------------------


def test_events_seq_after_and_last(store: Store) -> None:
    e, other = make_execution(), make_execution()
    assert store.last_event_seq(e.id) == 0
    assert store.events(e.id) == []
    first = store.add_events([event(e.id, "execution.created", message="hi", data={"k": [1]})])
    store.add_events([event(other.id)])
    rest = store.add_events([event(e.id, "task.started", stage=0, task_id="a"), event(e.id)])
    seqs = [ev.seq for ev in first + rest]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > 0
    listed = store.events(e.id)
    assert [ev.seq for ev in listed] == seqs
    assert listed[0].kind == "execution.created"
    assert listed[0].message == "hi"
    assert listed[0].data == {"k": [1]}
    assert (listed[1].stage, listed[1].task_id) == (0, "a")
    assert [ev.seq for ev in store.events(e.id, after=seqs[0])] == seqs[1:]
    assert store.events(e.id, after=seqs[-1]) == []
    assert [ev.seq for ev in store.events(e.id, limit=2)] == seqs[:2]
    assert store.last_event_seq(e.id) == seqs[-1]
    assert store.add_events([]) == []


# -- concurrency and other processes ---------------------------------------------------


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    executions = [make_execution(status=E.EXECUTING) for _ in range(6)]
    for e in executions:
        store.create_execution(e)
    errors: list[BaseException] = []

    def work(e: Execution) -> None:
        try:
            token = store.claim(e.id, e.id, 0, T0)
            for i in range(15):
                store.save_task_results(
                    [result(e.id, f"t{i}")],
                    [event(e.id, "task.succeeded", task_id=f"t{i}")],
                    token=token,
                )
                store.add_events([event(e.id, "note")], token=token)
                e.round = i
                store.transition(e, {E.EXECUTING}, [event(e.id, "saved")], token=token)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in executions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    all_seqs: list[int] = []
    for e in executions:
        assert len(store.task_results(e.id)) == 15
        events = store.events(e.id)
        assert len(events) == 45
        all_seqs += [ev.seq for ev in events]
        assert store.get_execution(e.id).round == 14  # type: ignore[union-attr]
    assert len(set(all_seqs)) == len(all_seqs)


def test_second_instance_sees_the_data(open_new: Opener) -> None:
    first, second = open_new(), open_new()
    e = make_execution()
    first.create_execution(e)
    first.save_task_results([result(e.id, "a")])
    first.add_events([event(e.id)])
    assert second.get_execution(e.id) == e
    assert [r.task_id for r in second.task_results(e.id)] == ["a"]
    assert second.last_event_seq(e.id) == first.last_event_seq(e.id) > 0
    # and the other way round, including a claim
    assert second.claim(e.id, "worker-2", 0, T0) == 1
    assert first.claim(e.id, "worker-1", 0, T0) is None
    second.transition(e, {E.PENDING}, checkpoint=checkpoint(e.id, 0))
    assert len(first.checkpoints(e.id)) == 1


def test_a_watcher_reading_after_its_last_seq_misses_nothing(open_new: Opener) -> None:
    """Events of one execution become visible in ``seq`` order, whoever writes them."""
    store = open_new()
    e = make_execution()
    store.create_execution(e)
    writers, per_writer = 4, 40
    barrier = threading.Barrier(writers)

    def write(w: int) -> None:
        s = open_new()
        barrier.wait()
        for i in range(per_writer):
            s.save_task_results(
                [result(e.id, f"w{w}-{i}")], [event(e.id, "task.succeeded", task_id=f"w{w}-{i}")]
            )

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    seen: list[int] = []
    while True:  # what `connectsw watch` does: read after the last seq seen
        done = not any(t.is_alive() for t in threads)
        batch = store.events(e.id, after=seen[-1] if seen else 0)
        seen += [ev.seq for ev in batch]
        if done and not batch:
            break
    for t in threads:
        t.join()
    assert len(seen) == len(set(seen)) == writers * per_writer


def test_the_process_that_stored_a_plan_reads_it_back_without_parsing_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing a plan costs ~40 µs a task (0.4 s at 10,000): the owner that just stored
    an execution reads it back several times per run. PostgreSQL gives JSONB back as
    text of its own, so its stored form is what is remembered (issue 5's overhead)."""
    execution = make_execution()
    store.create_execution(execution)
    parsed: list[object] = []
    original = Plan.model_validate_json

    def counting(text: str | bytes, **kw: object) -> Plan:
        parsed.append(text)
        return original(text, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Plan, "model_validate_json", counting)
    found = store.get_execution(execution.id)
    assert found is not None and found.plan == execution.plan
    assert parsed == []
