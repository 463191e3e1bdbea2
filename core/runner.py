"""What runs inside each Dask task: one plan task's attempts, persisted as they go.

A task call is small (ids and numbers); the worker reads the execution from the
store once per execution and round and caches it. Results are written by the
worker itself (through the task log), fenced by the owner's lease token: a
worker of an owner that lost its lease writes nothing.

The promises kept here: an attempt's deadline starts when it starts; an attempt
is stopped (its process group ended) at its deadline, on cancel, when the owner
loses its lease or dies, before it is recorded or retried; a result is checked
as JSON inside the attempt, so a bad value fails that task only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.core import workspace as git
from connectsw.core.errors import (
    ConnectSWError,
    LeaseLost,
    NotFound,
    TaskTimeout,
    one_line,
)
from connectsw.core.isolation import AgentCrashed, AttemptStopped, normalise, run_isolated
from connectsw.core.models import (
    Event,
    Execution,
    LLMUsage,
    TaskResult,
    TaskSpec,
    TaskStatus,
    utcnow,
)
from connectsw.core.monitor import INTERRUPTED, LEASE_LOST, STOP_STATUS, monitor
from connectsw.core.redact import masked_repr
from connectsw.core.states import TASK_EVENTS, EventKind, check_task
from connectsw.core.stores import Store, get_store, redact
from connectsw.core.supervisor import ProcessRef
from connectsw.core.tasklog import Queued, task_log
from connectsw.plugins.manager import DEFAULT_PLUGINS, describe_error, is_plugin_failure
from connectsw.plugins.output import plugin_output_to_stderr
from connectsw.plugins.registry import get_registries

if TYPE_CHECKING:
    from connectsw.core.grants import Grant, GrantRefused

log = logging.getLogger("connectsw.runner")

SUCCEEDED = TaskStatus.SUCCEEDED.value


class _TaskFailureLine(logging.Filter):
    """distributed's worker logs a task call that raised as "Compute Failed" with the
    call's repr and the traceback: ten lines, on the user's terminal (trial 8b F8: a
    store gone away under a running stage). A ConnectSW task's is one line: the engine
    records and reports the failure itself. Whole with ``CONNECTSW_DEBUG``."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg, args = record.msg, record.args
        if (
            isinstance(msg, str)
            and msg.startswith("Compute Failed")
            and isinstance(args, tuple)
            and len(args) >= 4
            and isinstance(args[0], tuple)
            and args[0][:1] == ("connectsw-task",)
            and not os.environ.get("CONNECTSW_DEBUG")
        ):
            key = args[0]
            record.msg = "task %s of %s failed in its Dask worker: %s"
            record.args = (key[-1], key[1] if len(key) > 1 else "?", event_text(str(args[3])))
            record.exc_info = record.exc_text = None
        return True


def _one_line_task_failures() -> None:
    worker_log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _TaskFailureLine) for f in worker_log.filters):
        worker_log.addFilter(_TaskFailureLine())


# Loaded in every worker that runs a task call (unpickling a TaskCall imports it).
_one_line_task_failures()


@dataclass(frozen=True, slots=True)
class TaskCall:
    """Everything a worker needs to run one task (an opaque object to Dask).

    Attempts ``first_attempt`` .. ``last_attempt`` may run (retries inside the
    call); ``token`` is the owner's lease token, which fences every write.
    ``reruns_marked``: the scheduler marks a task Dask may run twice
    (:mod:`connectsw.core.reruns`), so an unmarked run need not look for a record.
    ``grant``: the engine's signed permission to run these attempts
    (:mod:`connectsw.core.grants`); without a valid one no agent is called.
    """

    store_url: str
    execution_id: str
    round: int
    task_id: str
    token: int
    first_attempt: int = 1
    last_attempt: int = 1
    retry_backoff: float = 0.5
    retry_backoff_max: float = 30.0
    default_timeout: float = 0.0
    reruns_marked: bool = False
    grant: Grant | None = None
    #: Project memories for the agent (reference's context items), found by the engine.
    memories: tuple[dict[str, Any], ...] = ()
    #: Tasks of the same graph need this one: it hands them its records (:class:`Handoff`).
    hands_off: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled once per task: positional fields only, no per-instance field names.
        return (TaskCall, self._fields())

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Dask tokenizes the whole graph before it is sent: fields as they are, not
        # its generic (pickling) path for dataclasses, which is ~40 µs a task.
        return ("connectsw.TaskCall", *self._fields())

    def __call__(self, *upstream: Any) -> dict[str, Any] | Handoff | None:
        """Run the task (:func:`run_task`): the call is the graph's callable."""
        return run_task(self, *upstream)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)

    def __repr__(self) -> str:
        # Dask's "Compute Failed" log quotes a failed task's callable by its repr: the
        # store URL's password is masked (trial 8b F1).
        return masked_repr(self, urls=("store_url",))

    __str__ = __repr__


@dataclass(frozen=True)
class Known:
    """A result from outside the graph (an earlier stage or run); opaque to Dask."""

    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a task hands its dependents in the same graph: its result (None: an empty
    success) and the records its task log (``writer``) queued, maybe not written yet.

    A dependent running in another process queues those records ahead of its own
    (:meth:`~connectsw.core.tasklog.TaskLog.carry`), so the store gets a dependency's
    end before its dependent's start, whichever process writes first (issue 5: an
    event's ``seq`` respects dependency order). Its own process's log keeps that
    order by itself.
    """

    result: dict[str, Any] | None
    writer: str
    records: tuple[Queued, ...]


@dataclass
class _Loaded:
    execution: Execution
    tasks: dict[str, TaskSpec]
    workspace: Path


_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str, int], _Loaded] = OrderedDict()


def _load(store: Store, call: TaskCall) -> _Loaded:
    key = (call.store_url, call.execution_id, call.round)
    with _cache_lock:
        loaded = _cache.get(key)
        if loaded is not None:
            _cache.move_to_end(key)
            return loaded
    execution = store.get_execution(call.execution_id)
    if execution is None:
        raise NotFound(f"execution {call.execution_id} not found in {redact(call.store_url)}")
    loaded = _Loaded(execution, {t.id: t for t in execution.plan.tasks}, Path(execution.workspace))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > 8:
            _cache.popitem(last=False)
    return loaded


EMPTY_SUCCESS: dict[str, Any] = {
    "status": SUCCEEDED,
    "summary": "",
    "outputs": {},
    "artifacts": [],
    "error": None,
}


def public_result(result: TaskResult) -> dict[str, Any]:
    """What dependents receive from a task (JSON-ready)."""
    return {
        "status": result.status.value,
        "summary": result.summary,
        "outputs": result.outputs,
        "artifacts": [a.to_api() for a in result.artifacts],
        "error": result.error,
    }


#: Characters of an agent's text (its summary, its error) an event keeps, and of an
#: attempt's recorded error (:func:`_attempt_error`). A 15 MB summary was stored again
#: in its event and printed as one 15 MB line (trial 7, F6); a 15 MB error was stored
#: and printed whole (trial 8b, F7).
EVENT_TEXT_CHARS = 2000


def event_text(text: str) -> str:
    """``text`` cut to :data:`EVENT_TEXT_CHARS` characters, saying how much was left out."""
    if len(text) <= EVENT_TEXT_CHARS:
        return text
    return f"{text[:EVENT_TEXT_CHARS]}… ({len(text) - EVENT_TEXT_CHARS} more characters)"


def task_event(result: TaskResult, kind: str, message: str, stage: int) -> Event:
    """The event recording an attempt's state change (``message`` cut: :func:`event_text`)."""
    return Event(
        execution_id=result.execution_id,
        kind=kind,
        stage=stage,
        task_id=result.task_id,
        message=event_text(message),
        data={"attempt": result.attempt, "round": result.round},
    )


def upstream_value(value: Any) -> dict[str, Any]:
    """What a dependent receives from a task argument (a result, None, a known result or
    a :class:`Handoff`)."""
    if isinstance(value, Handoff):
        value = value.result
    if value is None:
        return dict(EMPTY_SUCCESS)
    if isinstance(value, Known):
        return value.result
    return dict(value)


class _Attempt:
    """One attempt's lifecycle on this worker: start record, stop reasons, final record."""

    def __init__(
        self,
        store: Store,
        call: TaskCall,
        task: TaskSpec,
        started: TaskResult,
        queued: list[Queued],
    ):
        self.store, self.call, self.task, self.started = store, call, task, started
        self.handle: int | None = None
        self.queued = queued  # what the call's task log queued, for its dependents

    def begin(self, durable: bool, check: bool) -> tuple[bool, TaskResult | None]:
        """Record the start; returns (go on, the attempt's existing record if refused).

        ``durable`` writes the start now, and refuses it if the attempt already has a
        record; else it is written within ``START_DELAY`` unless the attempt ends first,
        and with ``check`` (the call's first attempt) an existing record is looked up
        first. (False, None): fenced out.
        """
        event = task_event(self.started, EventKind.TASK_STARTED, self.task.title, self.task.stage)
        started = self.started
        if durable:
            try:
                existing = task_log.start_now(self.store, started, event, token=self.call.token)
            except LeaseLost:
                monitor.stop(self.call.execution_id, self.call.token, LEASE_LOST)
                return False, None
            return existing is None, existing
        if check:
            existing = self.store.attempt_record(
                started.execution_id, started.task_id, started.round, started.attempt
            )
            if existing is not None:
                return False, existing
        self.handle = task_log.start(self.store, started, event, token=self.call.token)
        return True, None

    def should_stop(self) -> str | None:
        return monitor.reason(self.call.execution_id, self.call.token)

    def on_spawn(self, ref: ProcessRef) -> None:
        """Record the process group now (synchronously): a crash after this leaves a trace."""
        self.started = self.started.model_copy(update={"process": ref.to_dict()})
        start_event = task_log.take_start(self.handle) if self.handle is not None else None
        events = [start_event] if start_event is not None else []
        try:
            task_log.write_now(self.store, [self.started], events, token=self.call.token)
        except LeaseLost:
            monitor.stop(self.call.execution_id, self.call.token, LEASE_LOST)

    def finish(self, result: TaskResult, kind: str, message: str) -> dict[str, Any] | None:
        """Queue the final record; return what dependents receive (None: empty success)."""
        check_task(TaskStatus.RUNNING, result.status)
        queued = task_log.finish(
            self.store,
            self.handle,
            result,
            task_event(result, kind, message, self.task.stage),
            token=self.call.token,
        )
        self.queued.append(queued)
        public = public_result(result)
        return None if public == EMPTY_SUCCESS else public


def _record_unstarted(
    store: Store,
    call: TaskCall,
    task: TaskSpec,
    status: TaskStatus,
    error: str,
    queued: list[Queued],
    attempt: int | None = None,
) -> dict[str, Any]:
    check_task(TaskStatus.PENDING, status)
    result = TaskResult(
        execution_id=call.execution_id,
        task_id=task.id,
        round=call.round,
        attempt=call.first_attempt if attempt is None else attempt,
        status=status,
        error=error,
        finished_at=utcnow(),
    )
    queued.append(
        task_log.finish(
            store,
            None,
            result,
            task_event(result, TASK_EVENTS[status], error, task.stage),
            token=call.token,
        )
    )
    return public_result(result)


def run_task(call: TaskCall, *upstream: Any) -> dict[str, Any] | Handoff | None:
    """Run one task to a final state; returns what dependents receive (a
    :class:`Handoff` when ``call.hands_off``).

    Every attempt's record goes through this process's task log (written within
    milliseconds, flushed by the engine before it reads the stage's results), after
    the records its dependencies handed it. Nothing runs without the call's valid
    grant (:func:`~connectsw.core.grants.check_grant`, checked before the store is
    opened): a refusal is recorded as the task's failure.
    """
    # Imported here: the engine imports this module, and its light commands need
    # neither cryptography nor distributed (~1 µs a task once loaded).
    from connectsw.core.grants import GrantRefused, check_grant

    queued: list[Queued] = []
    try:
        check_grant(call)
    except GrantRefused as exc:
        return _handoff(call, _refused(call, exc, call.first_attempt, queued), queued)
    store = get_store(call.store_url)
    loaded = _load(store, call)
    task = loaded.tasks[call.task_id]
    _carry(store, call, task, upstream)
    return _handoff(call, _run(store, call, loaded, task, upstream, queued), queued)


def _carry(store: Store, call: TaskCall, task: TaskSpec, upstream: tuple[Any, ...]) -> None:
    """Queue the records the task's dependencies handed it, if another process's task
    log queued them (only records of those tasks, in this execution and round)."""
    carried: list[Queued] = []
    for dep, value in zip(task.needs, upstream, strict=True):
        if not isinstance(value, Handoff) or value.writer == task_log.id:
            continue
        for result, events in value.records:
            if (result.execution_id, result.round, result.task_id) == (
                call.execution_id,
                call.round,
                dep,
            ):
                mine = tuple(
                    e for e in events if e.execution_id == call.execution_id and e.task_id == dep
                )
                carried.append((result, mine))
    if carried:
        task_log.carry(store, carried, token=call.token)


def _handoff(
    call: TaskCall, public: dict[str, Any] | None, queued: list[Queued]
) -> dict[str, Any] | Handoff | None:
    if not call.hands_off or not queued:
        return public
    return Handoff(public, task_log.id, tuple(queued))


def _run(
    store: Store,
    call: TaskCall,
    loaded: _Loaded,
    task: TaskSpec,
    upstream: tuple[Any, ...],
    queued: list[Queued],
) -> dict[str, Any] | None:
    deps = {dep: upstream_value(r) for dep, r in zip(task.needs, upstream, strict=True)}
    blocked = [d for d, r in deps.items() if r.get("status") != SUCCEEDED]
    if any(deps[d].get("status") == TaskStatus.CANCELLED.value for d in blocked):
        return _record_unstarted(
            store, call, task, TaskStatus.CANCELLED, "not run: cancelled", queued
        )
    if blocked:
        return _record_unstarted(
            store,
            call,
            task,
            TaskStatus.SKIPPED,
            f"not run: needs {', '.join(blocked)}, which did not succeed",
            queued,
        )
    monitor.enter(store, call.execution_id, call.token)
    try:
        reason = monitor.check_now(call.execution_id, call.token)
        if reason is not None:
            status = STOP_STATUS[reason]
            if status is None or reason == INTERRUPTED:
                # Fenced out: this process writes nothing more. Or its owner was
                # interrupted: it never started, the next run runs it under this number.
                return None
            return _record_unstarted(store, call, task, status, f"not run: {reason}", queued)
        return _attempts(store, call, loaded, task, deps, queued)
    finally:
        monitor.leave(call.execution_id, call.token)


def _refused(
    call: TaskCall, exc: GrantRefused, attempt: int, queued: list[Queued]
) -> dict[str, Any]:
    """Record attempt ``attempt`` as failed, never started, for the grant's refusal."""
    log.warning("task %s of %s not run: %s", call.task_id, call.execution_id, exc)
    store = get_store(call.store_url)
    task = _load(store, call).tasks.get(call.task_id)
    if task is None:
        raise NotFound(f"task {call.task_id!r} is not in execution {call.execution_id}")
    return _record_unstarted(store, call, task, TaskStatus.FAILED, str(exc), queued, attempt)


def _attempts(
    store: Store,
    call: TaskCall,
    loaded: _Loaded,
    task: TaskSpec,
    deps: dict[str, Any],
    queued: list[Queued],
) -> dict[str, Any] | None:
    execution = loaded.execution
    agent = get_registries().agents.get(task.agent)
    timeout = task.timeout or call.default_timeout or None
    base = {"execution_id": call.execution_id, "task_id": task.id, "round": call.round}
    attempt, last = call.first_attempt - 1, call.last_attempt
    while attempt < last:
        attempt += 1
        if attempt > call.first_attempt and call.grant is not None:
            from connectsw.core.grants import GrantRefused, check_expiry

            try:  # a retry starts later: its grant must still hold (signature checked)
                check_expiry(call.grant)
            except GrantRefused as exc:
                return _refused(call, exc, attempt, queued)
        started = TaskResult(
            **base, attempt=attempt, status=TaskStatus.RUNNING, started_at=utcnow()
        )
        run = _Attempt(store, call, task, started, queued)
        proceed, existing = run.begin(
            durable=not getattr(agent, "brief", False),
            check=attempt == call.first_attempt and _may_be_rerun(call),
        )
        if not proceed:
            if existing is None:
                return None  # fenced out: the new owner runs it
            if existing.status is not TaskStatus.RUNNING:
                # A second start of a finished attempt (Dask recomputing a result it
                # lost with a dead worker) is refused: its recorded outcome stands.
                public = public_result(existing)
                return None if public == EMPTY_SUCCESS else public
            # Its end was lost with its worker: recorded interrupted; a new number runs.
            lost = existing.model_copy(
                update={
                    "status": TaskStatus.INTERRUPTED,
                    "error": "its end was lost with its Dask worker",
                    "finished_at": utcnow(),
                }
            )
            run.finish(lost, EventKind.TASK_INTERRUPTED, lost.error or "")
            last += 1
            continue
        deadline = time.monotonic() + timeout if timeout else None  # starts with the attempt
        ctx: TaskContext | None = None
        try:
            if agent is None:
                raise ConnectSWError(
                    f"agent {task.agent!r} is not installed where the task ran (was its plugin"
                    " uninstalled? reinstall it, then `connectsw resume`)"
                )
            ctx = TaskContext(
                execution_id=execution.id,
                task=task,
                workspace=loaded.workspace,
                request=execution.request,
                plan_name=execution.plan.name,
                attempt=attempt,
                round=call.round,
                feedback=list(execution.feedback),
                memories=list(call.memories),
                upstream=deps,
                timeout=timeout,
                deadline=deadline,
                should_stop=run.should_stop,
                on_spawn=run.on_spawn,
            )
            output = _invoke(agent, ctx, run)
            for artifact in output.artifacts:  # inside the workspace, never in .git
                ctx.path(artifact.path)
            sha = _commit(loaded.workspace, output, ctx, run, call, execution.id, attempt)
            done = run.started.model_copy(
                update={
                    "status": TaskStatus.SUCCEEDED,
                    "summary": output.summary,
                    "outputs": output.outputs,
                    "artifacts": output.artifacts,
                    "commit": sha,
                    "finished_at": utcnow(),
                    "usage": _usage(output.usage if output.usage is not None else ctx.usage),
                }
            )
            return run.finish(done, EventKind.TASK_SUCCEEDED, output.summary)
        except AttemptStopped as exc:
            status = STOP_STATUS.get(exc.reason, TaskStatus.INTERRUPTED)
            if status is None:
                return None  # fenced out: the new owner records and reruns it
            stopped = run.started.model_copy(
                update={
                    "status": status,
                    "error": f"stopped: {exc.reason}",
                    "finished_at": utcnow(),
                    "usage": _usage(ctx.usage if ctx is not None else None),
                }
            )
            return run.finish(stopped, TASK_EVENTS[status], f"stopped: {exc.reason}")
        except Exception as exc:
            error = _attempt_error(exc, task.agent, task.id, attempt)
            failed = run.started.model_copy(
                update={
                    "status": TaskStatus.FAILED,
                    "error": error,
                    "finished_at": utcnow(),
                    "usage": _usage(ctx.usage if ctx is not None else None),
                }
            )
            reason = run.should_stop()
            if reason is not None:  # failed because it was being stopped
                status = STOP_STATUS[reason]
                if status is None:
                    return None
                failed = failed.model_copy(update={"status": status, "error": f"stopped: {reason}"})
                return run.finish(failed, TASK_EVENTS[status], f"stopped: {reason}")
            if attempt < last:
                run.finish(failed, EventKind.TASK_RETRYING, error)
                if _backoff(call, attempt, run):
                    continue
                reason = run.should_stop() or LEASE_LOST
                status = STOP_STATUS[reason]
                if status is None or reason == INTERRUPTED:
                    return None  # the next attempt never started: nothing to record
                nxt = failed.model_copy(
                    update={
                        "attempt": attempt + 1,
                        "status": status,
                        "error": f"not run: {reason}",
                        "usage": None,
                    }
                )
                return run.finish(nxt, TASK_EVENTS[status], f"not run: {reason}")
            return run.finish(failed, EventKind.TASK_FAILED, error)
    raise AssertionError("unreachable")  # pragma: no cover


def _commit(
    workspace: Path,
    output: AgentOutput,
    ctx: TaskContext,
    run: _Attempt,
    call: TaskCall,
    execution_id: str,
    attempt: int,
) -> str | None:
    """Commit the attempt's artifacts, within the attempt: its deadline and stop reasons
    end git's commands too (trial 8, F1). Raises TaskTimeout or AttemptStopped then."""
    task = ctx.task
    try:
        return git.commit(
            workspace,
            [a.path for a in output.artifacts],
            f"{task.id}: {task.title or task.agent + ' task'}\n\n"
            f"ConnectSW-Execution: {execution_id}\nConnectSW-Task: {task.id}\n"
            f"ConnectSW-Round: {call.round}\nConnectSW-Attempt: {attempt}",
            deadline=ctx.deadline,
            should_stop=run.should_stop,
        )
    except git.GitStopped as exc:
        if exc.reason == "timeout":
            limit = f" after {ctx.timeout:g}s" if ctx.timeout is not None else ""
            raise TaskTimeout(f"timed out{limit} (committing its outputs)") from None
        raise AttemptStopped(exc.reason, f"stopped: {exc.reason}") from None


class AgentExited(Exception):
    """A thread-isolated agent's ``run`` raised a BaseException that is not an error
    (``SystemExit``, ``KeyboardInterrupt``...): recorded as its failure, as a process
    agent's is (``raised SystemExit: 0 (agent.py:12)``)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _usage(usage: LLMUsage | None) -> LLMUsage | None:
    """What an attempt records of its model use (None when it made no call)."""
    return usage.model_copy() if usage else None


def _may_be_rerun(call: TaskCall) -> bool:
    """Whether this run of the call may be Dask running it a second time."""
    if not call.reruns_marked:
        return True
    from connectsw.core.reruns import may_be_rerun

    return may_be_rerun()


def _backoff(call: TaskCall, attempt: int, run: _Attempt) -> bool:
    """Sleep before the next attempt; False if a stop reason came meanwhile."""
    pause = min(call.retry_backoff * 2 ** (attempt - call.first_attempt), call.retry_backoff_max)
    end = time.monotonic() + pause
    while True:
        if run.should_stop() is not None:
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))


def _attempt_error(exc: Exception, agent: str, task_id: str, attempt: int) -> str:
    """:func:`_error_line`, cut by :func:`event_text`: the attempt's record, the
    execution's error built from it and every print of them stay bounded (a 15 MB
    TaskError was stored whole and printed as 15 MB, trial 8b F7)."""
    return event_text(_error_line(exc, agent, task_id, attempt))


def _error_line(exc: Exception, agent: str, task_id: str, attempt: int) -> str:
    """The one-line error of a failed attempt. An agent's code that raised something
    other than a :class:`TaskError` (a bug) gives its type and place, ``KeyError: 'x'
    (agent.py:12)``, and a third-party agent's names its plugin; the traceback is
    logged only with ``CONNECTSW_DEBUG=1``."""
    raised: BaseException = exc.original if isinstance(exc, AgentExited) else exc
    if isinstance(raised, AgentCrashed):
        error = one_line(raised)
    elif isinstance(raised, ConnectSWError):
        return one_line(raised, typed=True)
    else:
        error = describe_error(raised, where=True)
        if os.environ.get("CONNECTSW_DEBUG"):
            log.warning("task %s attempt %d crashed", task_id, attempt, exc_info=raised)
    regs = get_registries()
    owner = regs.agents.owners.get(agent)
    if owner is not None and owner not in DEFAULT_PLUGINS:
        error = f'agent "{agent}" of plugin "{owner}" raised {error}'
    return error


def _invoke(agent: Any, ctx: TaskContext, run: _Attempt) -> AgentOutput:
    """Run the agent where it can be stopped; its JSON output is checked here."""
    if getattr(agent, "isolation", "process") == "thread":
        with plugin_output_to_stderr():  # --json's stdout holds only the answer
            try:
                output = normalise(agent.run(ctx))
            except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
                if not is_plugin_failure(exc):
                    raise  # a real Ctrl-C (a task run in the main thread)
                # The agent's own code ended it (sys.exit in a library...): that task
                # fails; uncaught, it would take the Dask worker down with every task
                # queued there ("its worker died", trial 7).
                raise AgentExited(exc) from exc
        reason = run.should_stop()
        if reason is not None:
            raise AttemptStopped(reason, f"stopped: {reason}")
        late = ctx.deadline is not None and time.monotonic() > ctx.deadline
        if late and not getattr(agent, "stops_at_deadline", False):
            raise TaskTimeout(f"timed out after {ctx.timeout:g}s")
        return output
    return run_isolated(
        agent, ctx, deadline=ctx.deadline, should_stop=run.should_stop, on_spawn=run.on_spawn
    )
