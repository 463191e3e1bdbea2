"""Past executions written straight to a store, as the engine leaves them: the history the
learning tests read (tests/core/test_learning.py, tests/core/stores/test_learning_*.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectsw.core.models import (
    Execution,
    ExecutionStatus,
    Plan,
    Request,
    TaskResult,
    TaskStatus,
)
from connectsw.core.stores import Store

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def past_execution(
    store: Store | None,
    plan: Plan,
    status: ExecutionStatus = ExecutionStatus.COMPLETED,
    updated_at: datetime | None = None,
) -> Execution:
    """An execution of ``plan`` that ended ``status`` (stored unless ``store`` is None)."""
    ex = Execution(request=Request(command="run", args=["x"]), plan=plan, workspace="/w")
    ex.status = status
    if updated_at is not None:
        ex.updated_at = updated_at
    if store is not None:
        store.create_execution(ex)
    return ex


def attempt(
    ex: Execution,
    task: str,
    seconds: float | None,
    status: TaskStatus = TaskStatus.SUCCEEDED,
    round: int = 0,
    attempt: int = 1,
) -> TaskResult:
    """An attempt of ``task`` that started at :data:`T0` and ran ``seconds`` (None: no end)."""
    return TaskResult(
        execution_id=ex.id,
        task_id=task,
        round=round,
        attempt=attempt,
        status=status,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds) if seconds is not None else None,
    )
