"""The one state table: complete, consistent, and refusing what it does not list."""

from __future__ import annotations

import pytest

from connectsw.core.errors import ExitCode
from connectsw.core.models import ExecutionStatus, TaskStatus
from connectsw.core.states import (
    DECIDABLE,
    EXECUTION_EXIT_CODES,
    EXECUTION_STYLES,
    EXECUTION_TRANSITIONS,
    FINISHED,
    RUNNABLE,
    STOPPED,
    TASK_EVENTS,
    TASK_FINAL,
    TASK_RERUN,
    TASK_STYLES,
    TASK_TRANSITIONS,
    EventKind,
    IllegalTransition,
    check_execution,
    check_task,
)

E, T = ExecutionStatus, TaskStatus


def test_every_stored_status_has_a_row_and_interrupted_is_only_shown() -> None:
    assert set(EXECUTION_TRANSITIONS) == set(E) - {E.INTERRUPTED}
    assert all(E.INTERRUPTED not in to for to in EXECUTION_TRANSITIONS.values())
    assert set(TASK_TRANSITIONS) == set(T)
    assert set(EXECUTION_STYLES) == set(E) and set(TASK_STYLES) == set(T)
    assert set(EXECUTION_EXIT_CODES) == set(E)


def test_derived_sets() -> None:
    assert {E.COMPLETED, E.CANCELLED} == FINISHED
    assert all(s.finished for s in FINISHED) and not any(s.finished for s in RUNNABLE)
    assert not RUNNABLE & STOPPED - {E.GATE_FAILED, E.FAILED}
    assert E.EXECUTING not in STOPPED and E.INTERRUPTED in STOPPED
    assert {T.SUCCEEDED, T.FAILED, T.SKIPPED, T.CANCELLED, T.INTERRUPTED} == TASK_FINAL
    assert T.SUCCEEDED not in TASK_RERUN
    assert DECIDABLE["approve"] == {E.AWAITING_CHECKPOINT}
    assert FINISHED.isdisjoint(DECIDABLE["cancel"])
    assert set(TASK_EVENTS) == set(T) - {T.PENDING}
    assert all(isinstance(kind, EventKind) for kind in TASK_EVENTS.values())


def test_exit_codes_come_from_the_table() -> None:
    assert EXECUTION_EXIT_CODES[E.FAILED] is ExitCode.FAILED
    assert EXECUTION_EXIT_CODES[E.GATE_FAILED] is ExitCode.FAILED
    assert EXECUTION_EXIT_CODES[E.COMPLETED] is ExitCode.OK
    assert EXECUTION_EXIT_CODES[E.CANCELLED] is ExitCode.CANCELLED != ExitCode.OK


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (E.COMPLETED, E.EXECUTING),
        (E.CANCELLED, E.EXECUTING),
        (E.AWAITING_CHECKPOINT, E.FAILED),
        (E.PENDING, E.COMPLETED),
    ],
)
def test_an_illegal_execution_transition_raises(current: E, new: E) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {new.value}"):
        check_execution(current, new)


def test_legal_transitions_pass() -> None:
    for current, targets in EXECUTION_TRANSITIONS.items():
        for new in targets:
            check_execution(current, new)
    check_task(T.PENDING, T.RUNNING)
    check_task(T.RUNNING, T.INTERRUPTED)


@pytest.mark.parametrize(
    ("current", "new"),
    [(T.SUCCEEDED, T.RUNNING), (T.PENDING, T.SUCCEEDED), (T.FAILED, T.SUCCEEDED)],
)
def test_an_illegal_task_transition_raises(current: T, new: T) -> None:
    with pytest.raises(IllegalTransition):
        check_task(current, new)
