"""Contract of the Store interface, run against every backend.

A backend is one entry of ``BACKENDS``: a function that, given the test's
request, returns an ``open()`` callable; each call opens a new store instance
(new connections, as another process would) on the same storage. PostgreSQL runs
on the real server that scripts/test starts, one fresh schema per test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectsw.core.errors import ConfigError, StoreError
from connectsw.core.models import (
    CheckpointSpec,
    CheckpointState,
    Decision,
    Event,
    Execution,
    ExecutionStatus,
    GateResult,
    Plan,
    Request,
    RuleResult,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store, open_store
from connectsw.core.stores.postgres import PostgresStore
from connectsw.core.stores.sqlite import SQLiteStore

Opener = Callable[[], Store]


def sqlite_backend(request: pytest.FixtureRequest) -> Opener:
    path = request.getfixturevalue("tmp_path") / "store" / "connectsw.db"
    return lambda: SQLiteStore(path)


def postgres_backend(request: pytest.FixtureRequest) -> Opener:
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Opener]] = {
    "sqlite": sqlite_backend,
    "postgresql": postgres_backend,
}

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(BACKENDS))
def open_new(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens store instances of the backend on one shared storage; closes them after."""
    factory = BACKENDS[request.param](request)
    opened: list[Store] = []

    def open_one() -> Store:
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_new: Opener) -> Store:
    return open_new()


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
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://x")


def test_create_and_get_execution(store: Store) -> None:
    execution = make_execution(feedback=["be brief"])
    store.create_execution(execution)
    loaded = store.get_execution(execution.id)
    assert loaded == execution
    assert loaded is not execution
    assert loaded.plan.checkpoints[0].type == "one"
    assert store.get_execution("exec_missing") is None


def test_create_twice_refused(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own integrity error
        store.create_execution(execution)
    assert store.get_execution(execution.id) == execution


def test_save_execution_updates_and_returns_events(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    execution.status = ExecutionStatus.AWAITING_CHECKPOINT
    execution.stage = 1
    execution.error = "x"
    saved = store.save_execution(
        execution, [event(execution.id, "stage.finished"), event(execution.id, "checkpoint")]
    )
    assert [e.kind for e in saved] == ["stage.finished", "checkpoint"]
    assert 0 < saved[0].seq < saved[1].seq
    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert loaded.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert (loaded.stage, loaded.error) == (1, "x")
    assert [e.seq for e in store.events(execution.id)] == [e.seq for e in saved]
    assert store.save_execution(execution) == []


def test_cancellation_is_final(open_new: Opener) -> None:
    runner, canceller = open_new(), open_new()
    execution = make_execution(status=ExecutionStatus.EXECUTING)
    runner.create_execution(execution)
    assert canceller.execution_status(execution.id) is ExecutionStatus.EXECUTING
    cancelled = canceller.get_execution(execution.id)
    assert cancelled is not None
    cancelled.status = ExecutionStatus.CANCELLED
    canceller.save_execution(cancelled)
    # The running process, unaware, saves its next state: the cancellation stands.
    execution.status = ExecutionStatus.AWAITING_CHECKPOINT
    runner.save_execution(execution, [event(execution.id, "checkpoint.reached")])
    assert runner.execution_status(execution.id) is ExecutionStatus.CANCELLED
    assert [e.kind for e in runner.events(execution.id)] == ["checkpoint.reached"]
    assert runner.execution_status("exec_missing") is None


def test_list_executions_most_recently_updated_first(store: Store) -> None:
    executions = [make_execution(updated_at=T0 + timedelta(minutes=i)) for i in range(4)]
    for e in executions:
        store.create_execution(e)
    ids = [e.id for e in executions]
    assert [e.id for e in store.list_executions()] == ids[::-1]
    assert [e.id for e in store.list_executions(limit=2)] == [ids[3], ids[2]]
    executions[0].updated_at = T0 + timedelta(hours=1)
    store.save_execution(executions[0])
    assert [e.id for e in store.list_executions()] == [ids[0], ids[3], ids[2], ids[1]]


def test_claim_is_compare_and_set(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    eid = execution.id
    assert store.claim_execution(eid, "alice", None, T0)
    assert not store.claim_execution(eid, "bob", None, T0)  # already owned
    loaded = store.get_execution(eid)
    assert loaded is not None
    assert loaded.owner == "alice"
    assert loaded.heartbeat_at == T0
    assert not store.claim_execution(eid, "bob", "carol", T0)  # wrong expectation
    assert store.claim_execution(eid, "bob", "alice", T0 + timedelta(seconds=1))  # take over
    assert store.get_execution(eid).owner == "bob"  # type: ignore[union-attr]
    assert store.claim_execution(eid, None, "bob", T0)  # release
    assert store.get_execution(eid).owner is None  # type: ignore[union-attr]
    assert store.claim_execution(eid, "alice", None, T0)
    assert not store.claim_execution("exec_missing", "alice", None, T0)


def test_claim_races_have_one_winner(open_new: Opener) -> None:
    store = open_new()
    execution = make_execution()
    store.create_execution(execution)
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def contend(owner: str) -> None:
        s = open_new()
        barrier.wait()
        if s.claim_execution(execution.id, owner, None, T0):
            wins.append(owner)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_execution(execution.id).owner == wins[0]  # type: ignore[union-attr]


def test_save_execution_keeps_owner(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    store.claim_execution(execution.id, "alice", None, T0)
    execution.status = ExecutionStatus.EXECUTING  # this copy still says owner None
    store.save_execution(execution)
    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert loaded.owner == "alice"
    assert loaded.status is ExecutionStatus.EXECUTING


def test_heartbeat_only_by_owner(store: Store) -> None:
    execution = make_execution()
    store.create_execution(execution)
    assert not store.heartbeat(execution.id, "alice", T0)  # nobody owns it
    store.claim_execution(execution.id, "alice", None, T0)
    later = T0 + timedelta(seconds=30)
    assert store.heartbeat(execution.id, "alice", later)
    assert store.get_execution(execution.id).heartbeat_at == later  # type: ignore[union-attr]
    assert not store.heartbeat(execution.id, "bob", later + timedelta(seconds=1))
    assert store.get_execution(execution.id).heartbeat_at == later  # type: ignore[union-attr]


# -- task results ------------------------------------------------------------------


def test_save_task_result_replaces_same_attempt(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    store.save_task_result(result(e.id, "a", status=TaskStatus.RUNNING))
    events = store.save_task_result(
        result(e.id, "a", status=TaskStatus.SUCCEEDED, summary="done", outputs={"n": 1}),
        [event(e.id, "task.succeeded", task_id="a")],
    )
    assert events[0].seq > 0 and events[0].task_id == "a"
    attempts = store.task_attempts(e.id, "a")
    assert len(attempts) == 1
    assert attempts[0].status is TaskStatus.SUCCEEDED
    assert attempts[0].summary == "done"
    assert attempts[0].outputs == {"n": 1}


def test_task_results_latest_attempt_per_task_and_round(store: Store) -> None:
    e, other = make_execution(), make_execution()
    store.create_execution(e)
    store.create_execution(other)
    store.save_task_result(result(e.id, "a", 0, 1, status=TaskStatus.FAILED, error="boom"))
    store.save_task_result(result(e.id, "a", 0, 2))
    store.save_task_result(result(e.id, "b", 0, 1))
    store.save_task_result(result(e.id, "a", 1, 1, status=TaskStatus.RUNNING))
    store.save_task_result(result(other.id, "a", 5, 9))

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


def test_task_attempts_oldest_first(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    for rnd, attempt in [(1, 2), (0, 2), (1, 1), (0, 1)]:
        store.save_task_result(result(e.id, "a", rnd, attempt))
    store.save_task_result(result(e.id, "b", 0, 3))
    assert [(r.round, r.attempt) for r in store.task_attempts(e.id, "a")] == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert store.task_attempts(e.id, "zzz") == []


# -- checkpoints and gates -----------------------------------------------------------


def checkpoint(eid: str, stage: int, round: int = 0, **kw: object) -> CheckpointState:
    return CheckpointState(
        execution_id=eid, stage=stage, round=round, type=f"s{stage}", question="ok?", **kw
    )


def test_checkpoints_save_update_list(store: Store) -> None:
    e = make_execution()
    store.create_execution(e)
    store.save_checkpoint(checkpoint(e.id, 1))
    store.save_checkpoint(checkpoint(e.id, 0, round=1))
    store.save_checkpoint(checkpoint(e.id, 0))
    store.save_checkpoint(checkpoint("exec_other", 0))
    assert [(c.stage, c.round) for c in store.checkpoints(e.id)] == [(0, 0), (0, 1), (1, 0)]
    decided = checkpoint(
        e.id, 0, decision=Decision.REQUEST_CHANGES, feedback="shorter", decided_at=T0
    )
    store.save_checkpoint(decided)
    listed = store.checkpoints(e.id)
    assert len(listed) == 3
    assert listed[0] == decided
    assert listed[0].decision is Decision.REQUEST_CHANGES
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
    store.save_gate_result(e.id, 0, failed)
    assert store.gate_result(e.id, 1, 0) == failed
    assert store.gate_result(e.id, 1, 1) is None
    assert store.gate_result(e.id, 0, 0) is None
    passed = GateResult(stage=1, passed=True, score=1.0)
    store.save_gate_result(e.id, 0, passed)  # replaces
    assert store.gate_result(e.id, 1, 0) == passed
    store.save_gate_result(e.id, 1, failed)
    assert store.gate_result(e.id, 1, 1) == failed
    assert store.gate_result(e.id, 1, 0) == passed


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
    executions = [make_execution() for _ in range(6)]
    for e in executions:
        store.create_execution(e)
    errors: list[BaseException] = []

    def work(e: Execution) -> None:
        try:
            for i in range(15):
                store.save_task_result(
                    result(e.id, f"t{i}"), [event(e.id, "task.succeeded", task_id=f"t{i}")]
                )
                store.add_events([event(e.id, "note")])
                e.round = i
                store.save_execution(e, [event(e.id, "execution.saved")])
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
    first.save_task_result(result(e.id, "a"))
    first.add_events([event(e.id)])
    assert second.get_execution(e.id) == e
    assert [r.task_id for r in second.task_results(e.id)] == ["a"]
    assert second.last_event_seq(e.id) == first.last_event_seq(e.id) > 0
    # and the other way round, including a claim
    assert second.claim_execution(e.id, "worker-2", None, T0)
    assert not first.claim_execution(e.id, "worker-1", None, T0)
    second.save_checkpoint(checkpoint(e.id, 0))
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
            s.save_task_result(
                result(e.id, f"w{w}-{i}"), [event(e.id, "task.succeeded", task_id=f"w{w}-{i}")]
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
