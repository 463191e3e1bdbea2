"""Reading executions for people and the API: no Dask, no plugins, one store.

``connectsw status``, ``watch`` and the API's ``GET /v1/execution/{id}`` read
through here, so they start fast (nothing of dask or distributed is imported).
"""

from __future__ import annotations

from connectsw.core.errors import NotFound
from connectsw.core.liveness import shown_status
from connectsw.core.models import (
    CheckpointState,
    CheckpointView,
    Execution,
    ExecutionStatus,
    ExecutionView,
    TaskStatus,
)
from connectsw.core.stores import Store


class Views:
    """Read-only views of the executions in one store.

    ``lease_timeout`` (seconds) decides when an executing execution whose owner
    went silent is shown as ``interrupted``.
    """

    def __init__(self, store: Store, lease_timeout: float) -> None:
        self.store = store
        self.lease_timeout = lease_timeout

    def get(self, execution_id: str) -> Execution:
        """The execution; raises :class:`NotFound`."""
        execution = self.store.get_execution(execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id!r}")
        return execution

    def status(self, execution: Execution) -> ExecutionStatus:
        """The status as shown (INTERRUPTED if its owner died)."""
        return shown_status(execution, self.lease_timeout)

    def task_states(self, execution: Execution) -> dict[str, TaskStatus]:
        """Latest state of every task of the plan (pending if never started)."""
        latest = {r.task_id: r.status for r in self.store.task_results(execution.id)}
        return {t.id: latest.get(t.id, TaskStatus.PENDING) for t in execution.plan.tasks}

    def current_checkpoint(self, execution: Execution) -> CheckpointState | None:
        """The checkpoint of the current stage and round, if reached."""
        for cp in self.store.checkpoints(execution.id):
            if cp.stage == execution.stage and cp.round == execution.round:
                return cp
        return None

    def view(self, execution_id: str) -> ExecutionView:
        """The API's ``GET /v1/execution/{id}`` body."""
        execution = self.get(execution_id)
        checkpoint = None
        if execution.status is ExecutionStatus.AWAITING_CHECKPOINT:
            cp = self.current_checkpoint(execution)
            if cp is not None:
                checkpoint = CheckpointView(
                    type=cp.type, artifacts=cp.artifacts, question=cp.question, options=cp.options
                )
        return ExecutionView(
            execution_id=execution.id,
            status=self.status(execution),
            command=execution.request.command,
            title=execution.request.text,
            stage=execution.stage,
            round=execution.round,
            next_checkpoint=execution.next_checkpoint,
            checkpoint=checkpoint,
            gate=self.store.gate_result(execution.id, execution.stage, execution.round),
            tasks=self.task_states(execution),
            workspace=execution.workspace,
            error=execution.error,
            usage=self.store.llm_usage(execution.id),
            estimated_duration=execution.plan.estimated_duration,
            estimated_seconds=execution.plan.estimated_seconds,
        )
