"""The worker's write-behind task log: group commits, deferred starts, ordered records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# -- causal order (issue 5): a dependency's end is written before its dependent's start --


def attempt_event(task: str, kind: str, attempt: int = 1) -> Event:
    """An attempt's event as the runner makes it (core/runner.py task_event)."""
    return Event(execution_id="e", task_id=task, kind=kind, data={"attempt": attempt, "round": 0})


def done(task: str, attempt: int = 1) -> TaskResult:
    return running(task, attempt).model_copy(update={"status": TaskStatus.SUCCEEDED})


def seqs(store: SQLiteStore) -> dict[tuple[str | None, str], int]:
    found: dict[tuple[str | None, str], int] = {}
    for e in store.events("e"):
        key = (e.task_id, e.kind)
        assert key not in found, f"{key} written twice"
        found[key] = e.seq
    return found


def test_a_durable_start_is_written_after_what_was_queued_before_it(store: SQLiteStore) -> None:
    """b needs a: a's end, queued (write-behind), is written before b's start, which is
    written at once (an agent that records its start before it runs)."""
    log = TaskLog(interval=10, start_delay=10)
    handle = log.start(store, running("a"), attempt_event("a", "task.started"))
    log.finish(store, handle, done("a"), attempt_event("a", "task.succeeded"))
    log.start_now(store, running("b"), attempt_event("b", "task.started"))
    order = seqs(store)
    assert order[("a", "task.succeeded")] < order[("b", "task.started")]


def test_a_start_that_falls_due_is_written_after_what_was_queued_before_it(
    store: SQLiteStore,
) -> None:
    log = TaskLog(interval=10, start_delay=0)
    handle = log.start(store, running("a"), attempt_event("a", "task.started"))
    log.finish(store, handle, done("a"), attempt_event("a", "task.succeeded"))
    log.start(store, running("b"), attempt_event("b", "task.started"))  # due at once
    log.flush()
    order = seqs(store)
    assert order[("a", "task.succeeded")] < order[("b", "task.started")]


def test_records_handed_to_a_dependent_elsewhere_come_first_and_are_written_once(
    tmp_path: Path,
) -> None:
    """a ran in one process (its log's records not written yet), b in another: b's log
    queues a's records ahead of its own; whichever log writes first, a's end comes
    first and each event is written once."""
    for first in ("dependent", "dependency"):
        store = SQLiteStore(tmp_path / f"{first}.db")
        theirs, mine = TaskLog(interval=10, start_delay=10), TaskLog(interval=10, start_delay=10)
        handle = theirs.start(store, running("a"), attempt_event("a", "task.started"))
        handed = theirs.finish(store, handle, done("a"), attempt_event("a", "task.succeeded"))
        if first == "dependency":
            theirs.flush()
        mine.carry(store, [handed])
        mine.carry(store, [handed])  # a second dependent in the same process
        mine.start_now(store, running("b"), attempt_event("b", "task.started"))
        handle = mine.start(store, running("c"), attempt_event("c", "task.started"))
        mine.finish(store, handle, done("c"), attempt_event("c", "task.succeeded"))
        mine.flush()
        theirs.flush()
        order = seqs(store)  # each event once
        assert order[("a", "task.started")] < order[("a", "task.succeeded")]
        assert order[("a", "task.succeeded")] < order[("b", "task.started")]
        assert order[("a", "task.succeeded")] < order[("c", "task.started")]
        assert [(r.task_id, r.status) for r in store.task_attempts("e", "a")] == [
            ("a", TaskStatus.SUCCEEDED)
        ]
        store.close()


@pytest.mark.slow
def test_events_of_a_run_on_worker_processes_respect_dependency_order(tmp_path: Path) -> None:
    """A real run on a 2-process LocalCluster: every task's first event comes after the
    last event of each task it needs (its end), whichever worker ran each; no event
    is written twice. Shell tasks write their start at once, noop ones with their end;
    f fails once, then succeeds."""
    tasks: list[dict[str, object]] = []
    for i in range(12):
        tasks.append({"id": f"a{i}", "agent": "noop"})
        b: dict[str, object] = {"id": f"b{i}", "agent": "noop", "needs": [f"a{i}"]}
        if i % 2:
            b.update(agent="shell", **{"with": {"command": "true"}})
        tasks.append(b)
    again = '[ "$CONNECTSW_ATTEMPT" = 2 ]'
    tasks.append({"id": "f", "agent": "shell", "retries": 1, "with": {"command": again}})
    tasks.append({"id": "g", "agent": "noop", "needs": ["f", "b0"]})
    (tmp_path / "g.json").write_text(json.dumps({"name": "causal", "tasks": tasks}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"), CONNECTSW_ENGINE__RETRY_BACKOFF="0.05")
    cli = [sys.executable, "-m", "connectsw.cli.main"]
    ran = subprocess.run(
        [*cli, "run", "g.json", "--yes", "--json", "-w", "ws"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert ran.returncode == 0, ran.stderr
    execution_id = json.loads(ran.stdout)["executionId"]
    watched = subprocess.run(
        [*cli, "watch", execution_id, "--json", "--from-start"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    events = [json.loads(line) for line in watched.stdout.splitlines() if line.strip()]
    by_task: dict[str, list[tuple[int, str, int]]] = {}
    for e in events:
        if e.get("taskId"):
            by_task.setdefault(e["taskId"], []).append((e["seq"], e["kind"], e["data"]["attempt"]))
    for task_id, seen in by_task.items():
        assert len({(k, a) for _, k, a in seen}) == len(seen), f"{task_id}: repeated {seen}"
    for task in tasks:
        first = min(seq for seq, _, _ in by_task[str(task["id"])])
        for dep in task.get("needs", []):  # type: ignore[attr-defined]
            last = max(seq for seq, _, _ in by_task[dep])
            assert last < first, f"{dep} ended at seq {last}, after {task['id']} began ({first})"
    assert [k for _, k, _ in sorted(by_task["f"])] == [
        "task.started",
        "task.retrying",
        "task.started",
        "task.succeeded",
    ]
