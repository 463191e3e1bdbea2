"""What runs inside each Dask task: one plan task, with retries, persisted as it goes.

A task call is small (ids and numbers); the worker reads the execution from the
store once per execution and round and caches it. Results are written by the
worker itself, so a result is durable the moment its task finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.core import workspace as git
from connectsw.core.errors import ConnectSWError, NotFound, TaskTimeout, one_line
from connectsw.core.models import Event, Execution, TaskResult, TaskSpec, TaskStatus, utcnow
from connectsw.core.stores import Store, get_store, redact
from connectsw.core.tasklog import task_log
from connectsw.plugins.registry import get_registries

log = logging.getLogger("connectsw.runner")

SUCCEEDED = TaskStatus.SUCCEEDED.value


@dataclass(frozen=True, slots=True)
class TaskCall:
    """Everything a worker needs to run one task (an opaque object to Dask)."""

    store_url: str
    execution_id: str
    round: int
    task_id: str
    first_attempt: int = 1
    retry_backoff: float = 0.5
    retry_backoff_max: float = 30.0
    default_timeout: float = 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled once per task: positional fields only, no per-instance field names.
        return (TaskCall, tuple(getattr(self, f) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Known:
    """A result from outside the graph (an earlier stage or run); opaque to Dask."""

    result: dict[str, Any]


@dataclass
class _Loaded:
    execution: Execution
    tasks: dict[str, TaskSpec]
    workspace: Path


_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str, int], _Loaded] = OrderedDict()
_timeout_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="connectsw-task")


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


def _event(result: TaskResult, kind: str, message: str, stage: int) -> Event:
    return Event(
        execution_id=result.execution_id,
        kind=kind,
        stage=stage,
        task_id=result.task_id,
        message=message,
        data={"attempt": result.attempt, "round": result.round},
    )


def _finish(
    store: Store, result: TaskResult, kind: str, message: str, stage: int, start: int | None
) -> dict[str, Any] | None:
    """Queue the attempt's record for writing; return what dependents receive.

    A success that carries nothing returns None: dependents read it as
    :data:`EMPTY_SUCCESS`, and no dict travels between workers for it.
    """
    task_log.finish(store, start, result, _event(result, kind, message, stage))
    public = public_result(result)
    return None if public == EMPTY_SUCCESS else public


def upstream_value(value: Any) -> dict[str, Any]:
    """What a dependent receives from a task argument (a result, None or a known result)."""
    if value is None:
        return dict(EMPTY_SUCCESS)
    if isinstance(value, Known):
        return value.result
    return dict(value)


def _invoke(agent: Any, ctx: TaskContext, timeout: float | None) -> AgentOutput:
    if not timeout:
        out = agent.run(ctx)
    else:
        # A thread cannot be killed: the attempt fails at its deadline and the agent
        # is expected to honour ctx.timeout in what it runs (subprocess timeouts).
        future = _timeout_pool.submit(agent.run, ctx)
        try:
            out = future.result(timeout=timeout)
        except FutureTimeout:
            raise TaskTimeout(f"timed out after {timeout:g}s") from None
    if out is None:
        return AgentOutput()
    if isinstance(out, dict):
        return AgentOutput.model_validate(out)
    return out


def run_task(call: TaskCall, *upstream: Any) -> dict[str, Any] | None:
    """Run one task to a final state (succeeded, failed or skipped).

    Every attempt's record goes through this process's task log (written within
    milliseconds, flushed by the engine before it reads the stage's results).
    Returns what dependents receive.
    """
    store = get_store(call.store_url)
    loaded = _load(store, call)
    execution = loaded.execution
    task = loaded.tasks[call.task_id]
    deps = {dep: upstream_value(r) for dep, r in zip(task.needs, upstream, strict=True)}
    base = {"execution_id": call.execution_id, "task_id": task.id, "round": call.round}

    blocked = [d for d, r in deps.items() if r.get("status") != SUCCEEDED]
    if blocked:
        result = TaskResult(
            **base,
            attempt=call.first_attempt,
            status=TaskStatus.SKIPPED,
            error=f"not run: needs {', '.join(blocked)}, which did not succeed",
            finished_at=utcnow(),
        )
        return _finish(store, result, "task.skipped", result.error or "", task.stage, None)

    agent = get_registries().agents.get(task.agent)
    timeout = task.timeout or call.default_timeout or None
    last = call.first_attempt + task.retries
    workspace = loaded.workspace
    for attempt in range(call.first_attempt, last + 1):
        started = TaskResult(
            **base, attempt=attempt, status=TaskStatus.RUNNING, started_at=utcnow()
        )
        token = task_log.start(
            store, started, _event(started, "task.started", task.title, task.stage)
        )
        try:
            if agent is None:
                raise ConnectSWError(f"agent {task.agent!r} is not installed on this worker")
            ctx = TaskContext(
                execution_id=execution.id,
                task=task,
                workspace=workspace,
                request=execution.request,
                plan_name=execution.plan.name,
                attempt=attempt,
                round=call.round,
                feedback=list(execution.feedback),
                upstream=deps,
                timeout=timeout,
            )
            output = _invoke(agent, ctx, timeout)
            sha = git.commit(
                workspace,
                [a.path for a in output.artifacts],
                f"{task.id}: {task.title or task.agent + ' task'}\n\n"
                f"ConnectSW-Execution: {execution.id}\nConnectSW-Task: {task.id}\n"
                f"ConnectSW-Round: {call.round}\nConnectSW-Attempt: {attempt}",
            )
            done = started.model_copy(
                update={
                    "status": TaskStatus.SUCCEEDED,
                    "summary": output.summary,
                    "outputs": output.outputs,
                    "artifacts": output.artifacts,
                    "commit": sha,
                    "finished_at": utcnow(),
                }
            )
            return _finish(store, done, "task.succeeded", output.summary, task.stage, token)
        except Exception as exc:
            error = one_line(exc, typed=True)
            if not isinstance(exc, ConnectSWError):
                log.exception("task %s attempt %d crashed", task.id, attempt)
            failed = started.model_copy(
                update={"status": TaskStatus.FAILED, "error": error, "finished_at": utcnow()}
            )
            if attempt < last:
                _finish(store, failed, "task.retrying", error, task.stage, token)
                time.sleep(
                    min(
                        call.retry_backoff * 2 ** (attempt - call.first_attempt),
                        call.retry_backoff_max,
                    )
                )
            else:
                return _finish(store, failed, "task.failed", error, task.stage, token)
    raise AssertionError("unreachable")  # pragma: no cover
