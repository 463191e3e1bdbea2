"""The worker's write-behind task log: group commits, deferred starts, ordered records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectsw.core.models import Event, TaskResult, TaskStatus
from connectsw.core.stores.sqlite import SQLiteStore
from connectsw.core.tasklog import TaskLog


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "log.db")


def running(task: str, attempt: int = 1) -> TaskResult:
    return TaskResult(execution_id="e", task_id=task, attempt=attempt, status=TaskStatus.RUNNING)


def event(task: str, kind: str) -> Event:
    return Event(execution_id="e", task_id=task, kind=kind)


def test_a_fast_task_writes_its_start_with_its_end(store: SQLiteStore) -> None:
    log = TaskLog(interval=10, start_delay=10)  # the thread never writes on its own here
    token = log.start(store, running("a"), event("a", "task.started"))
    done = running("a").model_copy(update={"status": TaskStatus.SUCCEEDED})
    log.finish(store, token, done, event("a", "task.succeeded"))
    assert store.task_results("e") == []  # nothing written yet: write-behind
    log.flush()
    assert [r.status for r in store.task_results("e")] == [TaskStatus.SUCCEEDED]
    assert [e.kind for e in store.events("e")] == ["task.started", "task.succeeded"]


def test_a_long_task_shows_as_running_after_the_start_delay(store: SQLiteStore) -> None:
    log = TaskLog(interval=0.01, start_delay=0.05)
    token = log.start(store, running("slow"), event("slow", "task.started"))
    deadline = time.monotonic() + 5
    while not store.task_results("e") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.status for r in store.task_results("e")] == [TaskStatus.RUNNING]
    assert log.take_start(token) is None  # already written
    done = running("slow").model_copy(update={"status": TaskStatus.FAILED, "error": "x"})
    log.finish(store, token, done, event("slow", "task.failed"))
    log.flush()
    assert [r.status for r in store.task_results("e")] == [TaskStatus.FAILED]
    assert [e.kind for e in store.events("e")] == ["task.started", "task.failed"]


def test_many_records_share_one_transaction_and_keep_their_order(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = store.save_task_results

    def counting(results, events, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(results))
        return original(results, events, **kw)

    monkeypatch.setattr(store, "save_task_results", counting)
    log = TaskLog(interval=10, start_delay=10)
    for i in range(50):
        token = log.start(store, running(f"t{i}"), event(f"t{i}", "task.started"))
        done = running(f"t{i}").model_copy(update={"status": TaskStatus.SUCCEEDED})
        log.finish(store, token, done, event(f"t{i}", "task.succeeded"))
    log.flush()
    assert calls == [50]
    kinds = [(e.task_id, e.kind) for e in store.events("e")]
    for i in range(50):
        assert kinds.index((f"t{i}", "task.started")) < kinds.index((f"t{i}", "task.succeeded"))


def test_records_are_kept_when_the_store_fails(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = TaskLog(interval=10, start_delay=10)
    done = running("a").model_copy(update={"status": TaskStatus.SUCCEEDED})
    log.finish(store, None, done, event("a", "task.succeeded"))

    def broken(results, events, **kw):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(store, "save_task_results", broken)
        with pytest.raises(OSError):
            log.flush()
    log.flush()
    assert [r.status for r in store.task_results("e")] == [TaskStatus.SUCCEEDED]


def test_a_failing_store_holds_back_no_other_store(tmp_path: Path) -> None:
    good, bad = SQLiteStore(tmp_path / "good.db"), SQLiteStore(tmp_path / "bad.db")
    log = TaskLog(interval=10, start_delay=10)
    done = running("a").model_copy(update={"status": TaskStatus.SUCCEEDED})
    log.finish(bad, None, done, event("a", "task.succeeded"))
    log.finish(good, None, done, event("a", "task.succeeded"))

    def broken(results, events, **kw):  # type: ignore[no-untyped-def]
        raise OSError("gone")

    bad.save_task_results = broken  # type: ignore[method-assign]
    log.flush(good)  # the good store's records are written; its flush does not fail
    assert [r.status for r in good.task_results("e")] == [TaskStatus.SUCCEEDED]
    with pytest.raises(OSError, match="gone"):
        log.flush(bad)
    with pytest.raises(OSError, match="gone"):
        log.flush()
    del bad.save_task_results  # the store is back: its kept records go in
    log.flush()
    assert [r.status for r in bad.task_results("e")] == [TaskStatus.SUCCEEDED]


def test_flushing_a_store_this_process_never_opened_opens_nothing(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.core import tasklog

    log = TaskLog(interval=10, start_delay=10)
    monkeypatch.setattr(tasklog, "task_log", log)
    done = running("a").model_copy(update={"status": TaskStatus.SUCCEEDED})
    log.finish(store, None, done, event("a", "task.succeeded"))
    never = tmp_path / "never" / "x.db"
    assert tasklog.flush(f"sqlite:///{never}")
    assert not never.parent.exists()  # no store was opened for it
    # other stores' records were still written
    assert [r.status for r in store.task_results("e")] == [TaskStatus.SUCCEEDED]


def test_records_of_a_lost_lease_are_dropped_not_retried(store: SQLiteStore) -> None:
    from connectsw.core.models import Execution, Plan, Request, Stage, TaskSpec, utcnow

    execution = Execution(
        id="e",
        request=Request(command="run", args=["x"]),
        plan=Plan(
            name="p",
            workflow="w",
            tasks=[TaskSpec(id="a", agent="noop")],
            stages=[Stage(index=0, name="s", task_ids=["a"])],
        ),
        workspace="/tmp",
    )
    store.create_execution(execution)
    old = store.claim("e", "host:1", 0, utcnow())
    assert old == 1
    assert store.claim("e", "host:2", 1, utcnow()) == 2  # taken over
    log = TaskLog(interval=10, start_delay=10)
    done = running("a").model_copy(update={"status": TaskStatus.SUCCEEDED})
    log.finish(store, None, done, event("a", "task.succeeded"), token=old)
    log.flush()  # no error: the stale records are dropped
    log.flush()
    assert store.task_results("e") == []


def test_an_unwritable_record_is_dropped_alone(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.core.errors import UnwritableRecord

    original = store.save_task_results

    def picky(results, events, **kw):  # type: ignore[no-untyped-def]
        if any(r.task_id == "bad" for r in results):
            raise UnwritableRecord("task bad: outputs are not JSON")
        return original(results, events, **kw)

    monkeypatch.setattr(store, "save_task_results", picky)
    log = TaskLog(interval=10, start_delay=10)
    for tid in ("a", "bad", "b"):
        done = running(tid).model_copy(update={"status": TaskStatus.SUCCEEDED})
        log.finish(store, None, done, event(tid, "task.succeeded"))
    log.flush()
    log.flush()  # nothing left to retry
    assert sorted(r.task_id for r in store.task_results("e")) == ["a", "b"]
