"""The one state table: execution and task states, their allowed transitions, event kinds.

Everything that asks "may this run?", "is this finished?", "does the CLI stop
watching here?", "which exit code?", "which colour?" reads it from here, as
distributed's worker state machine keeps its transitions in one table. An
illegal transition raises :class:`IllegalTransition` (a bug, never user input).
The store writes a transition with one conditional update that also checks the
lease (fencing token): see :meth:`connectsw.core.stores.base.Store.transition`.
"""

from __future__ import annotations

from enum import StrEnum

from connectsw.core.errors import ConnectSWError, ExitCode
from connectsw.core.models import ExecutionStatus, TaskStatus

E = ExecutionStatus
T = TaskStatus


class IllegalTransition(ConnectSWError):
    """A transition the state table does not allow (a programming error)."""

    code = "illegal_transition"
    exit_code = ExitCode.INTERNAL


# -- executions ---------------------------------------------------------------------

#: Stored execution status -> statuses it may move to. ``INTERRUPTED`` is never
#: stored: it is how an ``EXECUTING`` execution whose owner died is shown.
EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    E.PENDING: frozenset({E.EXECUTING, E.FAILED, E.CANCELLED}),
    E.EXECUTING: frozenset(
        {E.EXECUTING, E.AWAITING_CHECKPOINT, E.GATE_FAILED, E.FAILED, E.COMPLETED, E.CANCELLED}
    ),
    E.AWAITING_CHECKPOINT: frozenset({E.EXECUTING, E.COMPLETED, E.CANCELLED}),
    E.GATE_FAILED: frozenset({E.EXECUTING, E.FAILED, E.CANCELLED}),  # FAILED: a failed restart
    E.FAILED: frozenset({E.EXECUTING, E.FAILED, E.CANCELLED}),
    E.COMPLETED: frozenset(),
    E.CANCELLED: frozenset(),
}

#: Statuses from which ``Engine.run`` continues an execution.
RUNNABLE: frozenset[ExecutionStatus] = frozenset({E.PENDING, E.EXECUTING, E.GATE_FAILED, E.FAILED})
#: Nothing more will ever run.
FINISHED: frozenset[ExecutionStatus] = frozenset(
    s for s, to in EXECUTION_TRANSITIONS.items() if not to
)
#: Shown statuses at which nothing runs until someone acts (``watch`` stops here).
STOPPED: frozenset[ExecutionStatus] = frozenset(
    {E.AWAITING_CHECKPOINT, E.GATE_FAILED, E.FAILED, E.INTERRUPTED} | FINISHED
)
#: A decision may be recorded in these statuses (cancel: in any unfinished one).
DECIDABLE: dict[str, frozenset[ExecutionStatus]] = {
    "approve": frozenset({E.AWAITING_CHECKPOINT}),
    "request_changes": frozenset({E.AWAITING_CHECKPOINT, E.GATE_FAILED, E.FAILED}),
    "cancel": frozenset(EXECUTION_TRANSITIONS) - FINISHED - {E.INTERRUPTED},
}

#: CLI exit code of a command whose execution ended in (or is shown as) a status
#: (``run``, ``new``, ``fix``, ``approve``, ``resume``, ``status ID``, ``watch ID``).
EXECUTION_EXIT_CODES: dict[ExecutionStatus, ExitCode] = {
    s: (
        ExitCode.FAILED
        if s in (E.FAILED, E.GATE_FAILED)
        else ExitCode.CANCELLED
        if s is E.CANCELLED
        else ExitCode.OK
    )
    for s in E
}

#: rich style of each shown status.
EXECUTION_STYLES: dict[ExecutionStatus, str] = {
    E.COMPLETED: "green",
    E.AWAITING_CHECKPOINT: "magenta",
    E.EXECUTING: "cyan",
    E.INTERRUPTED: "yellow",
    E.GATE_FAILED: "red",
    E.FAILED: "red",
    E.CANCELLED: "yellow",
    E.PENDING: "dim",
}


def check_execution(current: ExecutionStatus, new: ExecutionStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in the table."""
    if new not in EXECUTION_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"execution cannot go from {current.value} to {new.value}")


# -- task attempts ------------------------------------------------------------------

#: Attempt status -> statuses it may move to. ``PENDING`` is a task with no attempt
#: yet (never stored); an attempt is stored as ``RUNNING`` when it starts, or
#: directly final when it never starts (skipped, cancelled; failed: refused for want
#: of a valid grant, core/grants.py).
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.RUNNING, T.SKIPPED, T.CANCELLED, T.FAILED}),
    T.RUNNING: frozenset({T.SUCCEEDED, T.FAILED, T.CANCELLED, T.INTERRUPTED}),
    T.SUCCEEDED: frozenset(),
    T.FAILED: frozenset(),
    T.SKIPPED: frozenset(),
    T.CANCELLED: frozenset(),
    T.INTERRUPTED: frozenset(),
}

#: An attempt in one of these statuses has ended; only SUCCEEDED is never run again.
TASK_FINAL: frozenset[TaskStatus] = frozenset(s for s, to in TASK_TRANSITIONS.items() if not to)
#: A task whose latest attempt ended so runs again when its stage runs again.
TASK_RERUN: frozenset[TaskStatus] = TASK_FINAL - {T.SUCCEEDED}

TASK_STYLES: dict[TaskStatus, str] = {
    T.PENDING: "dim",
    T.RUNNING: "cyan",
    T.SUCCEEDED: "green",
    T.FAILED: "red",
    T.SKIPPED: "yellow",
    T.CANCELLED: "yellow",
    T.INTERRUPTED: "yellow",
}


def check_task(current: TaskStatus, new: TaskStatus) -> None:
    """Raise :class:`IllegalTransition` unless attempt ``current -> new`` is in the table."""
    if new not in TASK_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"task attempt cannot go from {current.value} to {new.value}")


# -- events -------------------------------------------------------------------------


class EventKind(StrEnum):
    """Every kind of event an execution records (``Event.kind``)."""

    EXECUTION_CREATED = "execution.created"
    EXECUTION_RUNNING = "execution.running"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_ADVANCED = "execution.advanced"
    EXECUTION_APPROVED = "execution.approved"
    EXECUTION_CHANGES_REQUESTED = "execution.changes_requested"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_COMPLETED = "execution.completed"
    EXECUTION_CANCELLED = "execution.cancelled"
    STAGE_STARTED = "stage.started"
    TASK_STARTED = "task.started"
    TASK_SUCCEEDED = "task.succeeded"
    TASK_RETRYING = "task.retrying"
    TASK_FAILED = "task.failed"
    TASK_SKIPPED = "task.skipped"
    TASK_CANCELLED = "task.cancelled"
    TASK_INTERRUPTED = "task.interrupted"
    GATE_PASSED = "gate.passed"
    GATE_FAILED = "gate.failed"
    #: A gate run ended before its verdict (cancel, or its owner lost or died): no verdict.
    GATE_STOPPED = "gate.stopped"
    CHECKPOINT_REACHED = "checkpoint.reached"
    CHECKPOINT_DECIDED = "checkpoint.decided"


#: The event recorded when an attempt ends in a status (RUNNING: when it starts).
TASK_EVENTS: dict[TaskStatus, EventKind] = {
    T.RUNNING: EventKind.TASK_STARTED,
    T.SUCCEEDED: EventKind.TASK_SUCCEEDED,
    T.FAILED: EventKind.TASK_FAILED,
    T.SKIPPED: EventKind.TASK_SKIPPED,
    T.CANCELLED: EventKind.TASK_CANCELLED,
    T.INTERRUPTED: EventKind.TASK_INTERRUPTED,
}
#: Events after which a task counts as done in a progress bar.
TASK_DONE_EVENTS: frozenset[str] = frozenset(
    {
        EventKind.TASK_SUCCEEDED,
        EventKind.TASK_FAILED,
        EventKind.TASK_SKIPPED,
        EventKind.TASK_CANCELLED,
    }
)
