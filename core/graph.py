"""Plan stage → low-level Dask graph (a task dict; no ``dask.delayed``, which is slow to build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectsw.core.models import Plan
from connectsw.core.runner import Known, TaskCall

TaskKey = tuple[str, str, int, str, str]

#: First element of every task's key: Dask groups tasks by it (its "key prefix").
KEY_PREFIX = "connectsw-task"


def task_key(execution_id: str, round: int, task_id: str, submission: str) -> TaskKey:
    """Dask key of a task: unique per execution, round and ``submission``.

    ``submission`` names one graph submission (the owner's lease token and the pass
    number): a key submitted again while the scheduler still holds the previous
    one (a release is asynchronous) would get that task's old state, e.g. the error
    of a worker that died, instead of a new run.

    A tuple whose first element is the same for every task: Dask keeps statistics
    per key prefix (``key_split``), on the scheduler and on each worker for every
    transition, so a prefix per task made that bookkeeping grow with the graph.
    """
    return (KEY_PREFIX, execution_id, round, submission, task_id)


def stage_graph(
    plan: Plan,
    stage: int,
    calls: Mapping[str, TaskCall],
    known: Mapping[str, dict[str, Any]],
    submission: str,
) -> tuple[dict[TaskKey, Any], list[TaskKey]]:
    """The graph running the tasks of ``stage`` named in ``calls``.

    ``known`` holds the results of tasks that need not run (finished earlier in
    this stage, or in an earlier stage); they enter the graph as plain values, so a
    resumed stage runs only what had not finished. Returns the graph and the keys
    of the tasks to run (see :func:`task_key` for ``submission``).
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
                args.append(task_key(call.execution_id, call.round, dep, submission))
            else:
                args.append(Known(known[dep]))
        key = task_key(call.execution_id, call.round, task.id, submission)
        dsk[key] = (call, *args)  # the call runs the task (TaskCall.__call__)
        keys.append(key)
    return dsk, keys
