"""The relational store's interface: executions, task results, checkpoints, gates, events."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    ExecutionStatus,
    GateResult,
    TaskResult,
)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    url = re.sub(r"(://[^:/@]*):[^/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


class Store(ABC):
    """Durable state of executions. Every method is one transaction."""

    # -- executions ---------------------------------------------------------
    @abstractmethod
    def create_execution(self, execution: Execution) -> None:
        """Insert a new execution."""

    @abstractmethod
    def get_execution(self, execution_id: str) -> Execution | None:
        """The execution, or None."""

    @abstractmethod
    def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """Just the status (cheap: no plan to parse), or None."""

    @abstractmethod
    def save_execution(self, execution: Execution, events: Sequence[Event] = ()) -> list[Event]:
        """Update an execution and append ``events`` atomically; returns them with ``seq``.

        Cancellation is final: an execution cancelled meanwhile (by another process)
        stays cancelled; the events are still appended.
        """

    @abstractmethod
    def list_executions(self, limit: int = 20) -> list[Execution]:
        """Most recently updated executions first."""

    @abstractmethod
    def claim_execution(
        self, execution_id: str, owner: str | None, expected: str | None, now: datetime
    ) -> bool:
        """Set the owner if it is still ``expected`` (compare-and-set); True if claimed."""

    @abstractmethod
    def heartbeat(self, execution_id: str, owner: str, now: datetime) -> bool:
        """Refresh the owner's heartbeat; False if ``owner`` no longer owns it."""

    # -- tasks ----------------------------------------------------------------
    @abstractmethod
    def save_task_result(self, result: TaskResult, events: Sequence[Event] = ()) -> list[Event]:
        """Insert or replace the result of one attempt, with its events, atomically."""

    @abstractmethod
    def save_task_results(
        self, results: Sequence[TaskResult], events: Sequence[Event]
    ) -> list[Event]:
        """Insert or replace several results and append events, in one transaction."""

    @abstractmethod
    def task_results(self, execution_id: str, round: int | None = None) -> list[TaskResult]:
        """The latest attempt of each task (of one round, if given)."""

    @abstractmethod
    def task_attempts(self, execution_id: str, task_id: str) -> list[TaskResult]:
        """Every attempt of one task, oldest first."""

    # -- checkpoints and gates -------------------------------------------------
    @abstractmethod
    def save_checkpoint(self, checkpoint: CheckpointState) -> None:
        """Insert or update a checkpoint (keyed by execution, stage, round)."""

    @abstractmethod
    def checkpoints(self, execution_id: str) -> list[CheckpointState]:
        """All checkpoints of an execution, in order."""

    @abstractmethod
    def save_gate_result(self, execution_id: str, round: int, result: GateResult) -> None:
        """Insert or replace the gate result of one stage and round."""

    @abstractmethod
    def gate_result(self, execution_id: str, stage: int, round: int) -> GateResult | None:
        """The gate result of one stage and round, or None."""

    # -- events ----------------------------------------------------------------
    @abstractmethod
    def add_events(self, events: list[Event]) -> list[Event]:
        """Append events; returns them with ``seq`` set."""

    @abstractmethod
    def events(self, execution_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of an execution with ``seq > after``, oldest first."""

    @abstractmethod
    def last_event_seq(self, execution_id: str) -> int:
        """The ``seq`` of the execution's latest event (0 if none)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
