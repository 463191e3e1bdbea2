"""The relational store's interface: executions, task results, checkpoints, gates, events,
licenses, sessions, audit records, the outbox."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    ExecutionStatus,
    ExecutionUsage,
    GateResult,
    TaskResult,
)

if TYPE_CHECKING:
    from connectsw.core.stores.audit import AuditRecord
    from connectsw.core.stores.learning import (
        ChangeRequest,
        CheckpointStats,
        LearnedPattern,
        TaskStats,
        WorkflowStats,
    )
    from connectsw.core.stores.outbox import Applied, OutboxMessage, Response
    from connectsw.core.stores.sessions import SecurityEvent, SessionRecord
    from connectsw.licensing.models import License, LicenseStatus


class Store(ABC):
    """Durable state of executions. Every method is one transaction.

    Writes made on behalf of the execution's owner take its fencing ``token``
    (``Execution.lease_token``) and are conditional on it, in the same
    transaction: a process whose lease was taken over writes nothing more
    (:class:`~connectsw.core.errors.LeaseLost`). Every driver error is raised as
    :class:`~connectsw.core.errors.StoreError`.
    """

    # -- executions ---------------------------------------------------------
    @abstractmethod
    def create_execution(self, execution: Execution, events: Sequence[Event] = ()) -> list[Event]:
        """Insert a new execution (lease token 0, no owner) with its first events."""

    @abstractmethod
    def get_execution(self, execution_id: str) -> Execution | None:
        """The execution (with owner, heartbeat and lease token), or None."""

    @abstractmethod
    def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        """Just the stored status (cheap: no plan to parse), or None."""

    @abstractmethod
    def lease(self, execution_id: str) -> Lease | None:
        """Owner, heartbeat and fencing token (cheap), or None if no such execution."""

    @abstractmethod
    def list_executions(self, limit: int = 20, license_id: str | None = None) -> list[Execution]:
        """Most recently updated executions first; with ``license_id``, only that
        license's (server mode)."""

    @abstractmethod
    def transition(
        self,
        execution: Execution,
        expected: Collection[ExecutionStatus],
        events: Sequence[Event] = (),
        *,
        token: int | None = None,
        checkpoint: CheckpointState | None = None,
        decide: bool = False,
        gate: tuple[int, GateResult] | None = None,
    ) -> list[Event]:
        """Write ``execution`` iff its stored status is in ``expected`` (and, with
        ``token``, its lease token is still ``token``); append ``events``; returns
        them with ``seq``. One conditional update: the caller checked the state
        table (:mod:`connectsw.core.states`) before.

        In the same transaction: ``checkpoint`` is inserted or replaced, or with
        ``decide`` updated only if it has no decision yet; ``gate`` is
        ``(round, result)`` inserted or replaced.

        Raises :class:`~connectsw.core.errors.LeaseLost` if the token no longer
        matches, :class:`~connectsw.core.errors.Conflict` (naming the stored
        status) if the status is not in ``expected`` or the checkpoint was
        already decided, :class:`~connectsw.core.errors.NotFound` if there is no
        such execution. Nothing is written then.
        """

    @abstractmethod
    def claim(
        self, execution_id: str, owner: str, expected_token: int, now: datetime
    ) -> int | None:
        """Take the lease: set ``owner``, heartbeat ``now`` and token ``expected_token + 1``
        iff the stored token is still ``expected_token`` (compare-and-set).

        Returns the new token, or None if another process claimed it first.
        """

    @abstractmethod
    def release(self, execution_id: str, owner: str, token: int, now: datetime) -> bool:
        """Give the lease up (owner set to NULL, token kept) iff ``token`` still holds it."""

    @abstractmethod
    def heartbeat(self, execution_id: str, owner: str, token: int, now: datetime) -> bool:
        """Refresh the heartbeat; False if ``token`` no longer holds the lease."""

    # -- tasks ----------------------------------------------------------------
    @abstractmethod
    def save_task_results(
        self,
        results: Sequence[TaskResult],
        events: Sequence[Event] = (),
        *,
        token: int | None = None,
    ) -> list[Event]:
        """Insert or replace attempts' records and append events, in one transaction.

        Each record and event is written once: an attempt whose stored record is
        final is not written again, nor are its events; over a stored start, its
        ``task.started`` event is not written again; a final record, or an attempt's
        event of one kind, repeated in ``results``/``events`` counts once
        (:func:`~connectsw.core.stores.sql.first_writes`). Returns the events written,
        with their ``seq``.

        With ``token``, every result and event must belong to one execution, and
        nothing is written unless its lease token is still ``token``
        (:class:`~connectsw.core.errors.LeaseLost`).
        """

    @abstractmethod
    def start_attempt(
        self, result: TaskResult, events: Sequence[Event] = (), *, token: int | None = None
    ) -> tuple[TaskResult | None, list[Event]]:
        """Record an attempt's start (``result``, running) unless that attempt (execution,
        task, round, attempt) or a later one of the task already has a record; then
        nothing is written and the latest such record is returned: ``(existing or
        None, events written with seq)``. Fenced by ``token`` like
        :meth:`save_task_results`.

        This is how a second start of the same attempt is refused: Dask recomputes a
        finished task whose result was lost with a dead worker (never concurrently
        with its first run).
        """

    @abstractmethod
    def attempt_record(
        self, execution_id: str, task_id: str, round: int, attempt: int
    ) -> TaskResult | None:
        """The record of attempt ``attempt`` or a later one of the task in ``round``
        (the latest), or None (cheap: one primary-key range read)."""

    @abstractmethod
    def task_results(self, execution_id: str, round: int | None = None) -> list[TaskResult]:
        """The latest attempt of each task (of one round, if given), in write order."""

    @abstractmethod
    def task_attempts(self, execution_id: str, task_id: str) -> list[TaskResult]:
        """Every attempt of one task, oldest first (by round, then attempt)."""

    @abstractmethod
    def llm_usage(self, execution_id: str) -> ExecutionUsage:
        """The execution's language-model use: per task, summed over every attempt and
        round that called a model, and the total (zero when none did)."""

    @abstractmethod
    def running_attempts(self, execution_id: str) -> list[TaskResult]:
        """Attempts of the execution whose record is still ``running`` (any round)."""

    # -- checkpoints and gates -------------------------------------------------
    @abstractmethod
    def checkpoints(self, execution_id: str) -> list[CheckpointState]:
        """All checkpoints of an execution, by stage then round."""

    @abstractmethod
    def gate_result(self, execution_id: str, stage: int, round: int) -> GateResult | None:
        """The gate result of one stage and round, or None."""

    @abstractmethod
    def set_gate_process(
        self, execution_id: str, process: dict[str, Any] | None, *, token: int | None = None
    ) -> None:
        """Record the process group (``ProcessRef.to_dict()``) of the command a gate of
        the execution runs now, or clear it with None.

        With ``token``, nothing is written unless the lease token is still ``token``
        (:class:`~connectsw.core.errors.LeaseLost`); :class:`NotFound` if there is
        no such execution. A new owner ends a recorded group before its own gate runs.
        """

    @abstractmethod
    def gate_process(self, execution_id: str) -> dict[str, Any] | None:
        """The recorded process group of a running gate command, or None (cheap)."""

    # -- events ----------------------------------------------------------------
    @abstractmethod
    def add_events(self, events: Sequence[Event], *, token: int | None = None) -> list[Event]:
        """Append events (fenced by ``token`` if given); returns them with ``seq`` set."""

    @abstractmethod
    def events(self, execution_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of an execution with ``seq > after``, oldest first."""

    @abstractmethod
    def last_event_seq(self, execution_id: str) -> int:
        """The ``seq`` of the execution's latest event (0 if none)."""

    # -- licenses (no key is ever stored: a license is found by its key's digest) ------
    @abstractmethod
    def create_license(self, license: License, key_digest: str) -> None:
        """Store a new license; :class:`~connectsw.core.errors.Conflict` if it exists."""

    @abstractmethod
    def get_license(self, license_id: str) -> License | None:
        """The license with this public id, or None."""

    @abstractmethod
    def license_by_digest(self, key_digest: str) -> License | None:
        """The license whose key has this digest, or None."""

    @abstractmethod
    def list_licenses(self, limit: int = 100) -> list[License]:
        """Licenses, most recently changed first."""

    @abstractmethod
    def update_license(self, license: License, expected: Collection[LicenseStatus]) -> None:
        """Write ``license`` iff its stored status is in ``expected``; NotFound or Conflict."""

    # -- sessions of licenses (core/stores/sessions.py) -------------------------------
    @abstractmethod
    def open_session(
        self, session: SessionRecord, active_since: datetime, limit: int
    ) -> int | None:
        """Insert unless ``limit`` sessions are active; active count before, or None."""

    @abstractmethod
    def session_by_token(self, token_digest: str) -> SessionRecord | None:
        """The session whose token has this digest, or None."""

    @abstractmethod
    def active_sessions(self, license_id: str, active_since: datetime, now: datetime) -> int:
        """How many sessions of the license are active."""

    @abstractmethod
    def touch_session(self, session_id: str, at: datetime) -> bool:
        """Heartbeat of a session that has not ended; False if it has."""

    @abstractmethod
    def end_session(self, session_id: str, at: datetime) -> bool:
        """End a session; False if it had ended already."""

    @abstractmethod
    def add_security_event(self, event: SecurityEvent) -> None:
        """Record a license flagged by a check (multi-IP, sessions above the allowance)."""

    @abstractmethod
    def security_events(self, license_id: str, limit: int = 100) -> list[SecurityEvent]:
        """The license's flags, newest first."""

    # -- audit log of API requests (core/stores/audit.py) -------------------------------
    @abstractmethod
    def add_audit_records(self, records: Sequence[AuditRecord]) -> int:
        """Insert, in one transaction, the records whose ``event_id`` is not stored yet
        (a replayed batch adds nothing twice); returns how many were new."""

    @abstractmethod
    def audit_records(self, license_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Audit records of one license, or of every request, newest first."""

    # -- the outbox of e-mails (core/stores/outbox.py) -----------------------------------
    @abstractmethod
    def queue_message(self, message: OutboxMessage) -> int | None:
        """Queue an e-mail unless its ``dedupe_key`` is taken (UNIQUE); its id, or None."""

    @abstractmethod
    def apply_response(
        self,
        license_id: str,
        dedupe_key: str,
        decide: Callable[[License], Response | None],
    ) -> Applied:
        """One transaction under the license's row lock: nothing if ``dedupe_key`` is
        queued; else ``decide``'s message, license record and security events, or nothing."""

    @abstractmethod
    def outbox_messages(self, *, unsent: bool = False, limit: int = 100) -> list[OutboxMessage]:
        """Queued e-mails, oldest first (only those not sent yet with ``unsent``)."""

    @abstractmethod
    def outbox_message(self, message_id: int) -> OutboxMessage | None:
        """One queued e-mail, or None."""

    @abstractmethod
    def mark_sent(self, message_id: int, at: datetime) -> bool:
        """The server accepted it; False if it was marked sent already."""

    @abstractmethod
    def mark_failed(self, message_id: int, error: str) -> None:
        """A failed delivery attempt: count it and keep ``error`` (one line)."""

    # -- the execution history's statistics (core/stores/learning.py) --------------------
    @abstractmethod
    def task_stats(
        self, workflow: str | None = None, window: int = 0, plan_name: str | None = None
    ) -> list[TaskStats]:
        """Per workflow, task id and agent: runs, attempts, failures, p50/p90 seconds.

        Every statistic reads the latest ``window`` executions of each workflow (most
        recently updated first; 0: all of them); with ``plan_name`` and ``workflow``,
        only those whose plan has that name."""

    @abstractmethod
    def workflow_stats(self, workflow: str | None = None, window: int = 0) -> list[WorkflowStats]:
        """Per workflow: finished executions by outcome."""

    @abstractmethod
    def checkpoint_stats(
        self, workflow: str | None = None, window: int = 0
    ) -> list[CheckpointStats]:
        """Per workflow and checkpoint type: decisions, approvals, change requests."""

    @abstractmethod
    def change_requests(
        self, workflow: str | None = None, limit: int = 10, window: int = 0
    ) -> list[ChangeRequest]:
        """The most requested changes (same trimmed text), most frequent first."""

    @abstractmethod
    def learned_patterns(self, limit: int = 1_000_000) -> list[LearnedPattern]:
        """Rows of the ``learned_patterns`` view."""

    @abstractmethod
    def workflows_seen(self) -> list[str]:
        """The workflows of every stored execution."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""


@dataclass(frozen=True)
class Lease:
    """Who holds an execution's lease: owner (``host:pid``), last heartbeat, fencing token."""

    owner: str | None
    heartbeat_at: datetime | None
    token: int
