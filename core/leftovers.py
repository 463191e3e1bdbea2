"""What a stopped owner leaves behind: running attempts, a gate's command, tasks never run.

A new owner (after a takeover or a crash) and ``cancel`` (once no live owner
holds the execution) end them before anything else runs or is shown: the
process groups of attempts still recorded as running and of a gate command
still recorded as running are ended (TERM, grace, KILL), so that no attempt
and no gate run of a stage overlaps with the next one; an ended gate run is
recorded ``gate.stopped`` (it reached no verdict). A cancelled execution's
tasks that never had an attempt are recorded ``cancelled``: they will never run.
"""

from __future__ import annotations

import logging
import time

from connectsw.core.events import dispatch
from connectsw.core.models import Event, Execution, TaskResult, TaskStatus, utcnow
from connectsw.core.monitor import POLL_SECONDS
from connectsw.core.runner import task_event
from connectsw.core.states import TASK_EVENTS, EventKind, check_task
from connectsw.core.stores import Store
from connectsw.core.supervisor import ProcessRef, stop_group

log = logging.getLogger("connectsw.leftovers")

#: Why a task that never started is recorded ``cancelled``.
NOT_RUN = "not run: cancelled"
#: Why a gate run a stopped owner left is recorded stopped (``gate.stopped``).
GATE_ENDED = "stopped: the process that ran it ended first; the gate runs again"
GATE_CANCELLED = "stopped: cancelled"


def end_leftovers(
    store: Store, execution_id: str, token: int | None, status: TaskStatus, reason: str
) -> int:
    """End what a previous owner of ``execution_id`` left running, and record it.

    A gate command recorded as running has its process group ended and its
    record cleared (fenced by ``token``). Each attempt still recorded as
    running has its process group (if recorded, on this host) ended (TERM,
    grace, KILL), then is recorded with ``status`` (``interrupted`` when a new
    owner takes over, ``cancelled`` on cancel), fenced by ``token``. Attempts
    with no process of their own ran in a worker's thread: their worker's
    monitor stops them within its poll interval, which is waited for. Returns
    how many attempts were ended. Raises
    :class:`~connectsw.core.errors.LeaseLost` if ``token`` lost the lease.
    """
    cancelled = status is TaskStatus.CANCELLED
    end_gate_leftover(store, execution_id, token, GATE_CANCELLED if cancelled else GATE_ENDED)
    running = store.running_attempts(execution_id)
    if not running:
        return 0
    end_attempt_groups(running)
    if not all(a.process for a in running):  # some ran in a worker's thread
        time.sleep(2 * POLL_SECONDS)
    now = utcnow()
    for attempt in running:
        check_task(attempt.status, status)
    ended = [
        a.model_copy(update={"status": status, "error": reason, "finished_at": now})
        for a in running
    ]
    kind = (
        EventKind.TASK_INTERRUPTED if status is TaskStatus.INTERRUPTED else EventKind.TASK_CANCELLED
    )
    events = [task_event(a, kind, reason, 0) for a in ended]
    for event in events:
        event.stage = None
    dispatch(store.save_task_results(ended, events, token=token))
    return len(ended)


def end_attempt_groups(running: list[TaskResult]) -> int:
    """End the recorded process group of each attempt in ``running`` (TERM, grace,
    KILL; only on this host, and never a reused pid: :func:`stop_group`), without
    recording anything. Returns how many groups still had processes to signal.

    Also used by ``cancel`` while the owner lives but a worker does not answer
    (stopped with SIGSTOP, or hung): the owner records the attempts when it can.
    """
    signalled = 0
    for attempt in running:
        if attempt.process:
            try:
                signalled += stop_group(ProcessRef.from_dict(attempt.process))
            except (KeyError, ValueError):
                log.warning("task %s: unreadable process record", attempt.task_id)
    return signalled


def end_gate_leftover(
    store: Store, execution_id: str, token: int | None, reason: str = GATE_ENDED
) -> bool:
    """End the process group of a gate command a previous owner left running.

    Returns True if a gate run was recorded (with its command's group, or ``{}``
    before its first command): its record is then cleared and a ``gate.stopped``
    event says ``reason`` (both fenced by ``token``). A recorded gate run never
    reached its verdict (the owner clears the record when its rules are done).
    """
    recorded = store.gate_process(execution_id)
    if recorded is None:
        return False
    try:
        if recorded:  # ``{}``: the gate run had started no command yet
            stop_group(ProcessRef.from_dict(recorded))
    except (KeyError, ValueError):
        log.warning("execution %s: unreadable gate process record", execution_id)
    store.set_gate_process(execution_id, None, token=token)
    execution = store.get_execution(execution_id)
    stage = execution.stage if execution is not None else None
    event = Event(
        execution_id=execution_id, kind=EventKind.GATE_STOPPED, stage=stage, message=reason
    )
    dispatch(store.add_events([event], token=token))
    return True


def record_never_run(store: Store, execution: Execution, token: int | None) -> int:
    """Record ``cancelled`` each task of cancelled ``execution`` that never had an attempt.

    Call it only once nothing of the execution runs any more (its owner
    stopped, or there is none); fenced by ``token`` when an owner writes.
    Returns how many tasks were recorded.
    """
    recorded = {r.task_id for r in store.task_results(execution.id)}
    never = [t for t in execution.plan.tasks if t.id not in recorded]
    if not never:
        return 0
    now = utcnow()
    results = []
    for task in never:
        check_task(TaskStatus.PENDING, TaskStatus.CANCELLED)
        results.append(
            TaskResult(
                execution_id=execution.id,
                task_id=task.id,
                round=execution.round,
                attempt=1,
                status=TaskStatus.CANCELLED,
                error=NOT_RUN,
                finished_at=now,
            )
        )
    stages = {tid: s.index for s in execution.plan.stages for tid in s.task_ids}
    events = [
        task_event(r, TASK_EVENTS[r.status], NOT_RUN, stages.get(r.task_id, 0)) for r in results
    ]
    dispatch(store.save_task_results(results, events, token=token))
    return len(results)
