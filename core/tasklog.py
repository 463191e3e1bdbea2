"""The worker's write-behind log of task records: group commits off the scheduler's path.

A task's final record is queued and written by one thread per process, many
records per transaction, within ``INTERVAL`` seconds; the task itself returns
at once. A task's start is written only if the task runs longer than
``START_DELAY`` (a fast task's start is written with its end). The engine calls
:func:`flush` on every worker before it reads a stage's results, so nothing it
acts on is only in memory. A record lost in a crash loses nothing: that attempt
runs again when the execution is resumed.

Causal order (issue 5): a record is written after everything this process queued
before it for the same execution (a synchronous write first writes what is queued),
and a task hands its dependents the records it queued
(:class:`~connectsw.core.runner.Handoff`): a dependent running in another process
queues them ahead of its own (:meth:`TaskLog.carry`),
so a dependency's end always gets a lower event ``seq`` than its dependent's start,
whichever process writes first. The store writes a record (and its events) once.

Records are kept per store, execution and lease token: every write is fenced
by the token of the owner the attempt ran for. A group whose lease moved on
(:class:`~connectsw.core.errors.LeaseLost`) is dropped, never retried, and the
attempts of that execution in this process are told to stop. A record that can
never be written (:class:`~connectsw.core.errors.UnwritableRecord`) is dropped
alone, with an error in the log. A store that cannot be written (unreachable,
or gone) keeps its records and is retried with backoff, and holds back no
other group's records.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from connectsw.core.errors import LeaseLost, UnwritableRecord, one_line
from connectsw.core.events import dispatch
from connectsw.core.models import Event, TaskResult
from connectsw.core.stores import Store, opened_store

log = logging.getLogger("connectsw.tasklog")

INTERVAL = 0.1
START_DELAY = 0.05
MAX_BACKOFF = 5.0


@dataclass
class _Pending:
    """What one store still has to receive, in order."""

    results: list[TaskResult] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class _Start:
    due: float
    store: Store
    result: TaskResult
    event: Event
    token: int | None


_Key = tuple[int, str, int | None]  # (id of the store, execution id, lease token)
#: A record and the events that go with it, as queued: what a task hands its dependents.
Queued = tuple[TaskResult, tuple[Event, ...]]
#: Attempts whose records this process carried for a dependent, remembered (at most).
CARRIED_MEMORY = 10_000


class TaskLog:
    """Pending task records of this process, written by one daemon thread."""

    def __init__(self, interval: float = INTERVAL, start_delay: float = START_DELAY) -> None:
        self.interval = interval
        self.start_delay = start_delay
        self._starts: dict[int, _Start] = {}
        self._queued: dict[_Key, tuple[Store, _Pending]] = {}
        self._ids = itertools.count()
        #: Names this task log in the records its tasks hand their dependents.
        self.id = uuid.uuid4().hex
        self._carried: OrderedDict[tuple[str, str, int, int], None] = OrderedDict()
        self._lock = threading.Lock()
        # Held while writing, so a record is never overtaken by a later one of its task.
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(
        self, store: Store, result: TaskResult, event: Event, *, token: int | None = None
    ) -> int:
        """Note that an attempt started; returns a handle for :meth:`finish` / :meth:`take_start`.

        ``token`` is the lease token the attempt runs under (fences the write).
        """
        handle = next(self._ids)
        with self._lock:
            self._starts[handle] = _Start(
                time.monotonic() + self.start_delay, store, result, event, token
            )
            self._ensure_thread()
        return handle

    def take_start(self, handle: int) -> Event | None:
        """The start's event if it is not queued for writing yet (the caller writes it)."""
        with self._lock:
            start = self._starts.pop(handle, None)
        return start.event if start is not None else None

    def write_now(
        self,
        store: Store,
        results: list[TaskResult],
        events: list[Event],
        *,
        token: int | None = None,
    ) -> None:
        """Write records synchronously, after everything queued before them for their
        execution (written first).

        Raises :class:`LeaseLost` when the lease moved on (nothing is written).
        """
        with self._write_lock:
            for execution_id in dict.fromkeys(r.execution_id for r in results):
                self._write_queued(store, execution_id, token)
            dispatch(store.save_task_results(results, events, token=token))

    def start_now(
        self, store: Store, result: TaskResult, event: Event, *, token: int | None = None
    ) -> TaskResult | None:
        """Write an attempt's start synchronously unless the attempt already has a record,
        after everything queued before it for its execution (written first).

        Returns that record if it has one (nothing written). Raises :class:`LeaseLost`.
        """
        with self._write_lock:
            self._write_queued(store, result.execution_id, token)
            existing, written = store.start_attempt(result, [event], token=token)
        dispatch(written)
        return existing

    def finish(
        self,
        store: Store,
        handle: int | None,
        result: TaskResult,
        event: Event,
        *,
        token: int | None = None,
    ) -> Queued:
        """Queue an attempt's final record (with its start if that was never written).

        Returns the record and the events queued with it (what dependents are handed).
        """
        with self._lock:
            start = self._starts.pop(handle, None) if handle is not None else None
            pending = self._pending(store, result.execution_id, token)
            events = (start.event, event) if start is not None else (event,)
            pending.results.append(result)
            pending.events.extend(events)
            self._ensure_thread()
        return result, events

    def carry(self, store: Store, records: Sequence[Queued], *, token: int | None = None) -> None:
        """Queue records another process's task log queued (a dependency's), ahead of
        anything queued after this call: whichever process writes first, they come
        first. An attempt's records are carried once per process (the store writes
        them once in all)."""
        with self._lock:
            for result, events in records:
                key = (result.execution_id, result.task_id, result.round, result.attempt)
                if key in self._carried:
                    continue
                self._carried[key] = None
                if len(self._carried) > CARRIED_MEMORY:
                    self._carried.popitem(last=False)
                pending = self._pending(store, result.execution_id, token)
                pending.results.append(result)
                pending.events.extend(events)
            self._ensure_thread()

    def _write_queued(self, store: Store, execution_id: str, token: int | None) -> None:
        """Write what is queued for ``execution_id`` (the write lock held); errors raise,
        and records that failed (not fenced out) are queued again in front."""
        with self._lock:
            entry = self._queued.pop((id(store), execution_id, token), None)
        if entry is None:
            return
        pending = entry[1]
        try:
            written = _save(store, pending, token)
        except LeaseLost:
            _fenced_out(execution_id, token)
            raise
        except Exception:
            with self._lock:
                back = self._pending(store, execution_id, token)
                back.results[:0] = pending.results
                back.events[:0] = pending.events
            raise
        dispatch(written)

    def flush(self, only: Store | None = None) -> None:
        """Write everything pending now, starts included.

        Raises the first error of store ``only`` (of any store if None); records
        that failed stay queued.
        """
        for failed, exc in self.write_pending():
            if only is None or failed is only:
                raise exc

    def write_pending(self) -> list[tuple[Store, Exception]]:
        """Write everything pending now; returns the stores that failed, with their errors."""
        return self._write(everything=True)

    def _pending(self, store: Store, execution_id: str, token: int | None) -> _Pending:
        key = (id(store), execution_id, token)
        entry = self._queued.get(key)
        if entry is None:
            entry = self._queued[key] = (store, _Pending())
        return entry[1]

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="connectsw-tasklog", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        pause = self.interval
        while True:
            time.sleep(pause)
            errors = self._write(everything=False)
            if not errors:
                pause = self.interval
                continue
            if pause == self.interval:  # once per failing streak, not every tick
                store, exc = errors[0]
                log.warning(
                    "writing task records to %s failed, retrying: %s",
                    type(store).__name__,
                    one_line(exc, typed=True),
                )
            pause = min(max(pause * 2, 0.1), MAX_BACKOFF)

    def _write(self, everything: bool) -> list[tuple[Store, Exception]]:
        """Write what is due, store by store; returns the stores that failed."""
        errors: list[tuple[Store, Exception]] = []
        with self._write_lock:
            now = time.monotonic()
            with self._lock:
                due = [t for t, s in self._starts.items() if everything or s.due <= now]
                for handle in due:
                    start = self._starts.pop(handle)
                    pending = self._pending(start.store, start.result.execution_id, start.token)
                    # After what was queued before: a dependency's end may be there. Nothing
                    # of its own task is (its end takes the start with it).
                    pending.results.append(start.result)
                    pending.events.append(start.event)
                batches = list(self._queued.items())
                self._queued = {}
            for (_, execution_id, token), (store, pending) in batches:
                try:
                    written = _save(store, pending, token)
                except LeaseLost:
                    # Another owner took over: these records are stale; stop this
                    # execution's attempts here; never retry them.
                    _fenced_out(execution_id, token)
                    continue
                except Exception as exc:
                    with self._lock:  # put them back in front, in order
                        back = self._pending(store, execution_id, token)
                        back.results[:0] = pending.results
                        back.events[:0] = pending.events
                    errors.append((store, exc))
                    continue
                dispatch(written)
        return errors


def _save(store: Store, pending: _Pending, token: int | None) -> list[Event]:
    """Write a group; a record that can never be written is dropped alone (logged)."""
    try:
        return store.save_task_results(pending.results, pending.events, token=token)
    except UnwritableRecord:
        if len(pending.results) <= 1:
            log.error("dropping a task record that cannot be written: %s", pending.results)
            return []
    written: list[Event] = []
    for result in pending.results:
        mine = [e for e in pending.events if e.task_id == result.task_id]
        try:
            written += store.save_task_results([result], mine, token=token)
        except UnwritableRecord as exc:
            log.error(
                "dropping the record of task %s attempt %d: %s",
                result.task_id,
                result.attempt,
                one_line(exc),
            )
    return written


def _fenced_out(execution_id: str, token: int | None) -> None:
    if token is None:
        return
    from connectsw.core.monitor import LEASE_LOST, monitor

    monitor.stop(execution_id, token, LEASE_LOST)


task_log = TaskLog()


def flush(store_url: str | None = None) -> bool:
    """Write this process's pending task records (run on every worker by the engine).

    With ``store_url``, only that store's failure is raised: the engine asking
    for its own records is not failed by another store's. A process that never
    opened that store has no records of it, and opens no connection for it.
    """
    if store_url is None:
        task_log.flush()
        return True
    store = opened_store(store_url)
    if store is None:
        task_log.write_pending()  # other stores' records; none of this one's are here
    else:
        task_log.flush(only=store)
    return True
