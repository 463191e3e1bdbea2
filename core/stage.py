"""Run one stage's unfinished tasks on Dask, in passes, until each has a final record.

A stage is submitted as one Dask graph (never a submit/wait loop per task).
Dask never re-runs a task by itself (the cluster runs with
``allowed-failures = 0``): when a worker dies, the task it was running errs
with ``KilledWorker``; that attempt is recorded as failed with a readable
cause, and the task's own ``retries`` decide whether a next pass runs it again
(with the next attempt number), together with the dependents that never ran.
Tasks lost with the worker before they recorded a start (only queued there)
spend no retry (:data:`MAX_LOST_BEFORE_START`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed import wait

from connectsw.core.errors import StoreError, one_line
from connectsw.core.events import dispatch
from connectsw.core.grants import engine_signer, pass_lifetime
from connectsw.core.grants import install as install_grant_key
from connectsw.core.graph import stage_graph
from connectsw.core.isolation import GRACE_SECONDS
from connectsw.core.lease import Lease
from connectsw.core.models import Execution, TaskResult, TaskStatus, utcnow
from connectsw.core.monitor import POLL_SECONDS
from connectsw.core.redact import HiddenUrl
from connectsw.core.runner import TaskCall, event_text, public_result, task_event
from connectsw.core.states import TASK_EVENTS, check_task
from connectsw.core.tasklog import flush as flush_task_log

if TYPE_CHECKING:
    from distributed import Client, Future

    from connectsw.conf.settings import EngineSettings
    from connectsw.core.stores import Store

WORKER_DIED = "its Dask worker died while running it (killed, or out of memory)"
LOST_WITH_WORKER = (
    "its Dask worker died (killed, or out of memory) before it recorded a start;"
    " it may not have run"
)
NEVER_STARTED = (
    "its Dask worker died (killed, or out of memory) {n} times before it could start;"
    " a task that keeps losing its worker before it starts is not run again"
)
#: How long a cancelled stage waits for its running attempts to stop (seconds): the
#: workers' monitors poll every 0.5 s, then the supervisor's TERM grace is 2 s.
STOP_WAIT = 2 * POLL_SECONDS + GRACE_SECONDS + 2.0


#: Seconds between two questions to the scheduler, while a stage runs, of how many
#: workers it has (:meth:`StageRun._wait`).
WORKER_POLL = 1.0


#: How many times one task may be lost with its worker before it recorded a start (it
#: was only queued there, or its worker died in the instant before its start), per
#: run. Such a loss spends no retry (issue 5); past this count the task fails: Dask's
#: own ``allowed-failures`` idea, for a task whose inputs kill every worker that
#: loads them.
MAX_LOST_BEFORE_START = 5


@dataclass
class _Budget:
    next: int
    last: int
    #: Times this run lost the task with its worker before it recorded a start.
    lost: int = 0


class StageRun:
    """The tasks of the execution's current stage and round, run to final records."""

    def __init__(
        self,
        store: Store,
        store_url: str,
        client: Client,
        settings: EngineSettings,
        execution: Execution,
        lease: Lease,
        memories: dict[str, tuple[dict[str, Any], ...]] | None = None,
        durable_starts: frozenset[str] = frozenset(),
        worker_wait: float = 30.0,
    ) -> None:
        self.store = store
        #: Seconds the cluster may have no worker before the stage fails (dask.worker_wait).
        self.worker_wait = worker_wait
        #: Why the stage stopped waiting: ``no Dask workers at ... after N s``.
        self.no_workers: str | None = None
        #: Tasks whose agents record their start before they run (not ``brief``): one
        #: lost with its worker without any record never started.
        self.durable_starts = durable_starts
        #: Task id -> project memories given to its agent (core/memory_auto.py).
        self.memories = memories or {}
        self.store_url = store_url
        self.client = client
        self.settings = settings
        self.execution = execution
        self.lease = lease
        self.futures: list[Future] = []
        self.latest: dict[str, TaskResult] = {}  # each task's latest record, as last read
        self._submissions = 0  # graphs submitted: part of every task's key

    def run(self) -> dict[str, TaskResult]:
        """Run until every task of the stage has a final record; returns them by task id.

        Raises :class:`~connectsw.core.errors.LeaseLost` if the lease was taken over.
        """
        execution = self.execution
        plan = execution.plan
        stage_ids = plan.stages[execution.stage].task_ids
        # One read before the stage and one after each pass. A task's latest record over
        # all rounds is its record of this round if it has one (rounds only grow).
        self.latest = {r.task_id: r for r in self.store.task_results(execution.id)}
        current = {t: r for t, r in self.latest.items() if r.round == execution.round}
        budgets: dict[str, _Budget] = {}
        for tid in stage_ids:
            prev = current.get(tid)
            if prev is not None and prev.status is TaskStatus.SUCCEEDED:
                continue
            first = prev.attempt + 1 if prev is not None else 1
            retries = plan.task(tid).retries
            if retries is None:
                retries = self.settings.default_retries
            budgets[tid] = _Budget(first, first + retries)
        while budgets:
            budgets = self._pass(budgets)
        final = self.latest
        return {
            tid: final[tid]
            for tid in stage_ids
            if tid in final and final[tid].round == execution.round
        }

    def cancel(self) -> None:
        """Cancel the Dask futures of the running pass (called from the lease thread)."""
        futures, self.futures = self.futures, []
        if futures:
            self.client.cancel(futures)

    def interrupt(self) -> None:
        """Stop the stage's running attempts at once: the owner was interrupted (Ctrl-C).

        The pass's futures are cancelled (queued tasks never start) and every worker's
        monitor is told to stop this execution's attempts (:func:`stop_attempts`): each
        one's process group is ended (TERM, grace, KILL) and the attempt recorded
        ``interrupted`` by its runner, with nothing committed. Returns once no attempt
        is recorded running, or after :data:`STOP_WAIT` seconds (a worker that does not
        answer): the engine then ends what is left (:func:`end_leftovers`).
        """
        from connectsw.core.monitor import stop_attempts

        execution_id, token = self.execution.id, self.lease.token
        with contextlib.suppress(Exception):
            self.cancel()
        with contextlib.suppress(Exception):
            self.client.run(stop_attempts, execution_id, token, on_error="return")
        stop_attempts(execution_id, token)  # tasks run in this process (threads-only cluster)
        with contextlib.suppress(Exception):
            self._wait_for_running_attempts()

    # -- one pass ---------------------------------------------------------------------
    def _pass(self, budgets: dict[str, _Budget]) -> dict[str, _Budget]:
        """Submit the graph of ``budgets``' tasks; returns the tasks to run again."""
        from connectsw.core.reruns import marks_reruns

        execution, lease = self.execution, self.lease
        marked = marks_reruns(self.client)
        signer = engine_signer()
        install_grant_key(self.client, signer)
        plan = execution.plan
        # Tasks a task of this graph needs hand their records on (runner.Handoff).
        needed = {d for tid in budgets for d in plan.task(tid).needs if d in budgets}
        unsigned = [
            TaskCall(
                store_url=self.store_url,
                execution_id=execution.id,
                round=execution.round,
                task_id=tid,
                token=lease.token,
                first_attempt=b.next,
                last_attempt=b.last,
                retry_backoff=self.settings.retry_backoff,
                retry_backoff_max=self.settings.retry_backoff_max,
                default_timeout=self.settings.default_timeout,
                reruns_marked=marked,
                memories=self.memories.get(tid, ()),
                hands_off=tid in needed,
            )
            for tid, b in budgets.items()
        ]
        # One signature for the pass; each call carries its own grant (core/grants.py).
        lifetime = pass_lifetime(
            (
                (
                    b.last - b.next + 1,
                    execution.plan.task(tid).timeout or self.settings.default_timeout,
                )
                for tid, b in budgets.items()
            ),
            self.settings.retry_backoff,
            self.settings.retry_backoff_max,
        )
        calls = {c.task_id: c for c in signer.sign(unsigned, lifetime)}
        known = {tid: public_result(r) for tid, r in self.latest.items() if tid not in calls}
        self._submissions += 1
        submission = f"{lease.token}.{self._submissions}"
        dsk, keys = stage_graph(execution.plan, execution.stage, calls, known, submission)
        futures = self.client.get(dsk, keys, sync=False)
        self.futures = list(futures)
        if lease.lost.is_set() or lease.cancelled.is_set():
            self.cancel()
        # Until every task is done; the results stay on the workers (records are read
        # from the store; a result may carry its task's records, runner.Handoff).
        with contextlib.suppress(CancelledError, Exception):
            self._wait(futures)
        self.futures = []
        self._flush()
        lease.check()
        if lease.cancelled.is_set():
            # Dask marks a cancelled future done at once; the attempt itself ends when
            # its worker's monitor stops it. Cancel returns once the work has stopped.
            self._wait_for_running_attempts()
        by_task = {key[-1]: future for key, future in zip(keys, futures, strict=True)}
        return self._settle(calls, budgets, by_task)

    def _wait(self, futures: list[Future]) -> None:
        """Wait until every future is done, or the cluster has had no worker for
        :attr:`worker_wait` seconds: then cancel them and set :attr:`no_workers`.

        Dask waits for a worker for ever (trial 6: past every task's timeout); its
        scheduler is asked how many it has every :data:`WORKER_POLL` seconds. One
        ``wait`` covers all the futures, in a thread: a ``wait`` with a timeout, called
        again each second, made a waiter per future each time (at 10,000 tasks the
        engine took twice the time of plain Dask).
        """
        finished = threading.Event()

        def wait_all() -> None:
            try:
                with contextlib.suppress(CancelledError, Exception):
                    wait(futures)
            finally:
                finished.set()

        threading.Thread(target=wait_all, name="connectsw-stage-wait", daemon=True).start()
        alone_since: float | None = None
        while not finished.wait(WORKER_POLL):
            try:
                workers = len(self.client.nthreads())
            except Exception:  # the scheduler cannot answer: it has no worker for us
                workers = 0
            now = time.monotonic()
            if workers:
                alone_since = None
                continue
            alone_since = now if alone_since is None else alone_since
            if now - alone_since >= self.worker_wait:
                from connectsw.core.cluster import no_workers

                scheduler = self.client.scheduler
                address = str(scheduler.address) if scheduler is not None else "the scheduler"
                self.no_workers = no_workers(address, self.worker_wait)
                self.cancel()
                finished.wait(STOP_WAIT)  # the cancelled futures end the wait
                return

    def _wait_for_running_attempts(self) -> None:
        """Wait (bounded by :data:`STOP_WAIT`) until no attempt of the execution runs."""
        deadline = time.monotonic() + STOP_WAIT
        while self.store.running_attempts(self.execution.id) and time.monotonic() < deadline:
            time.sleep(0.2)
            self._flush()

    def _flush(self) -> None:
        """Make every worker write its task records before they are read."""
        try:
            # A worker that just died has nothing left to write (its records died with
            # it, and its attempts are settled as lost): only its write errors count.
            # The URL's repr is masked: Dask logs a failed run's arguments by it.
            replies = self.client.run(flush_task_log, HiddenUrl(self.store_url), on_error="return")
            for reply in replies.values():
                if isinstance(reply, Exception) and not isinstance(reply, OSError):
                    raise reply  # comm errors (a dead worker) are OSErrors
            flush_task_log(self.store_url)  # tasks run in this process (threads-only cluster)
        except Exception as exc:
            # The stage is left executing: `connectsw resume` continues it.
            raise StoreError(
                f"task records could not be written: {one_line(exc, typed=True)}"
            ) from None

    def _settle(
        self, calls: dict[str, TaskCall], budgets: dict[str, _Budget], by_task: dict[str, Any]
    ) -> dict[str, _Budget]:
        """Record what a lost future left unrecorded; return the tasks to run again."""
        execution = self.execution
        plan = execution.plan
        self.latest.update(
            (r.task_id, r) for r in self.store.task_results(execution.id, execution.round)
        )
        now = {t: r for t, r in self.latest.items() if r.round == execution.round}
        cancelled = self.lease.cancelled.is_set()
        records: list[TaskResult] = []
        again: dict[str, _Budget] = {}
        unstarted: list[str] = []
        for tid, call in calls.items():
            future = by_task[tid]
            rec = now.get(tid)
            mine = rec if rec is not None and rec.attempt >= call.first_attempt else None
            if (
                future.status == "finished"
                and mine is not None
                and mine.status is not TaskStatus.RUNNING
            ):
                continue  # the runner recorded its final state
            deps = [by_task[d] for d in plan.task(tid).needs if d in calls]
            # Its own error (its worker died, or run_task raised), not a dependency's.
            died = future.status == "error" and all(d.status == "finished" for d in deps)
            if mine is not None and mine.status is TaskStatus.RUNNING:
                status = TaskStatus.CANCELLED if cancelled else TaskStatus.FAILED
                error = "stopped: cancelled" if cancelled else _cause(future, WORKER_DIED)
                records.append(_ended(mine, status, error))
                if not cancelled and mine.attempt < call.last_attempt:
                    again[tid] = _Budget(mine.attempt + 1, call.last_attempt, budgets[tid].lost)
            elif mine is not None and mine.status is TaskStatus.FAILED and died:
                # It failed, then its worker died during the backoff before a retry.
                if not cancelled and mine.attempt < call.last_attempt:
                    again[tid] = _Budget(mine.attempt + 1, call.last_attempt, budgets[tid].lost)
            elif mine is not None:
                continue  # final record written (the future was lost after it)
            elif died and not cancelled:
                # Lost with its worker before any record of it was written: no retry is
                # spent on it. An agent that writes its start before it runs never
                # started: it runs again under the same number, with nothing recorded. A
                # brief agent's start is written with its end, so it may have run: that
                # number is recorded interrupted and never reused.
                lost = budgets[tid].lost + 1
                if lost > MAX_LOST_BEFORE_START:
                    error = NEVER_STARTED.format(n=lost)
                    records.append(
                        _never(execution, tid, call.first_attempt, TaskStatus.FAILED, error)
                    )
                elif tid in self.durable_starts:
                    again[tid] = _Budget(call.first_attempt, call.last_attempt, lost)
                else:
                    records.append(
                        _never(
                            execution,
                            tid,
                            call.first_attempt,
                            TaskStatus.INTERRUPTED,
                            _cause(future, LOST_WITH_WORKER),
                            ran=True,
                        )
                    )
                    again[tid] = _Budget(call.first_attempt + 1, call.last_attempt + 1, lost)
            else:
                unstarted.append(tid)
        # Tasks that never started: run again with a task they need, else say why not.
        for tid in unstarted:
            call = calls[tid]
            if cancelled:
                records.append(
                    _never(
                        execution,
                        tid,
                        call.first_attempt,
                        TaskStatus.CANCELLED,
                        "not run: cancelled",
                    )
                )
            elif self.no_workers is not None and not _needs_any(plan, tid, calls):
                records.append(
                    _never(execution, tid, call.first_attempt, TaskStatus.FAILED, self.no_workers)
                )
            elif _needs_any(plan, tid, again):
                again[tid] = budgets[tid]
            else:
                records.append(
                    _never(
                        execution,
                        tid,
                        call.first_attempt,
                        TaskStatus.SKIPPED,
                        "not run: a task it needs did not succeed",
                    )
                )
        if self.no_workers is not None and not cancelled:
            # No worker to run a retry on: the next attempt fails with that cause.
            for tid, budget in again.items():
                status, error = TaskStatus.FAILED, self.no_workers
                if _needs_any(plan, tid, again):
                    status, error = TaskStatus.SKIPPED, "not run: a task it needs did not succeed"
                records.append(_never(execution, tid, budget.next, status, error))
            again = {}
        if records:
            stage = execution.stage
            events = [task_event(r, TASK_EVENTS[r.status], r.error or "", stage) for r in records]
            dispatch(self.store.save_task_results(records, events, token=self.lease.token))
            self.latest.update((r.task_id, r) for r in records)
        return again


def _cause(future: Any, default: str) -> str:
    if future.status != "error":
        return default
    try:
        exc = future.exception(timeout=5)
    except Exception:
        return default
    if type(exc).__name__ == "KilledWorker":
        return default
    return event_text(one_line(exc, typed=True))


def _ended(rec: TaskResult, status: TaskStatus, error: str) -> TaskResult:
    check_task(rec.status, status)
    return rec.model_copy(update={"status": status, "error": error, "finished_at": utcnow()})


def _never(
    execution: Execution,
    tid: str,
    attempt: int,
    status: TaskStatus,
    error: str,
    *,
    ran: bool = False,
) -> TaskResult:
    """The record of an attempt the runner never recorded (``ran``: it may have started)."""
    check_task(TaskStatus.RUNNING if ran else TaskStatus.PENDING, status)
    return TaskResult(
        execution_id=execution.id,
        task_id=tid,
        round=execution.round,
        attempt=attempt,
        status=status,
        error=error,
        finished_at=utcnow(),
    )


def _needs_any(plan: Any, tid: str, ids: dict[str, Any]) -> bool:
    """True if ``tid`` needs, directly or not, one of ``ids``."""
    todo, seen = list(plan.task(tid).needs), set()
    while todo:
        dep = todo.pop()
        if dep in ids:
            return True
        if dep not in seen:
            seen.add(dep)
            todo.extend(plan.task(dep).needs)
    return False
