"""Plan stage → low-level Dask graph (a task dict; no ``dask.delayed``, which is slow to build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectsw.core.models import Plan
from connectsw.core.runner import Known, TaskCall

TaskKey = tuple[str, str, int, str]

#: First element of every task's key: Dask groups tasks by it (its "key prefix").
KEY_PREFIX = "connectsw-task"


def task_key(execution_id: str, round: int, task_id: str) -> TaskKey:
    """Dask key of a task: unique per execution and round.

    A tuple whose first element is the same for every task: Dask keeps statistics
    per key prefix (``key_split``), on the scheduler and on each worker for every
    transition, so a prefix per task made that bookkeeping grow with the graph.
    """
    return (KEY_PREFIX, execution_id, round, task_id)


def stage_graph(
    plan: Plan,
    stage: int,
    calls: Mapping[str, TaskCall],
    known: Mapping[str, dict[str, Any]],
) -> tuple[dict[TaskKey, Any], list[TaskKey]]:
    """The graph running the tasks of ``stage`` named in ``calls``.

    ``known`` holds the results of tasks that need not run (finished earlier in
    this stage, or in an earlier stage); they enter the graph as plain values, so a
    resumed stage runs only what had not finished. Returns the graph and the keys
    of the tasks to run.
    """
    dsk: dict[TaskKey, Any] = {}
    keys: list[TaskKey] = []
    for task in plan.stage_tasks(stage):
        call = calls.get(task.id)
        if call is None:
            continue
        args: list[Any] = []
        for dep in task.needs:
            if dep in calls:
                args.append(task_key(call.execution_id, call.round, dep))
            else:
                args.append(Known(known[dep]))
        key = task_key(call.execution_id, call.round, task.id)
        dsk[key] = (call, *args)  # the call runs the task (TaskCall.__call__)
        keys.append(key)
    return dsk, keys
