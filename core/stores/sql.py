"""The relational store's SQL, written once for every backend.

:class:`SQLStore` implements :class:`~connectsw.core.stores.base.Store` with one
text of each statement; a backend subclass supplies its
:class:`~connectsw.core.stores.dialects.Dialect`, its connections (``_connection``)
and its driver's exception types. Driver errors become
:class:`~connectsw.core.errors.StoreError` here, in one place (:meth:`SQLStore._tx`),
with the store's location redacted.

Fencing (reference: Kleppmann, "How to do distributed locking"): a write made for
an execution's owner carries its lease token and is conditional on it in the same
transaction, either in the UPDATE's WHERE (:meth:`SQLStore.transition`) or by
reading the token under the write lock first (SQLite's ``BEGIN IMMEDIATE``;
PostgreSQL's ``FOR SHARE``, which also makes a concurrent claim wait for the
write to commit).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from connectsw.core.errors import Conflict, LeaseLost, NotFound, StoreError, one_line
from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    ExecutionStatus,
    ExecutionUsage,
    GateResult,
    LLMUsage,
    TaskResult,
    TaskStatus,
)
from connectsw.core.redact import redact_message
from connectsw.core.states import TASK_FINAL, EventKind
from connectsw.core.stores import migrations
from connectsw.core.stores.audit import AuditRecords
from connectsw.core.stores.base import Lease, Store
from connectsw.core.stores.dialects import Dialect
from connectsw.core.stores.learning import LearningRecords
from connectsw.core.stores.licenses import LicenseRecords
from connectsw.core.stores.outbox import OutboxRecords
from connectsw.core.stores.rows import (
    PlanCache,
    checkpoint_json,
    event_rows,
    events_from_rows,
    execution_from_row,
    execution_json,
    gate_json,
    plan_json,
    task_result_rows,
)
from connectsw.core.stores.sessions import SessionRecords

_EXECUTION_COLUMNS = "data, plan, owner, heartbeat_at, lease_token"
#: Plans parsed in this process, by their stored text (shared by every store: the same
#: text is the same plan).
_PLANS = PlanCache()


class SQLStore(LicenseRecords, SessionRecords, AuditRecords, OutboxRecords, LearningRecords, Store):
    """A :class:`Store` over a SQL database; subclasses supply connections and a dialect."""

    dialect: Dialect
    #: The driver's exception types: each becomes a StoreError.
    driver_errors: tuple[type[BaseException], ...]
    #: Where the store is, for messages (no password).
    where: str
    #: Why the store can only be read (e.g. "read-only file system"), or None.
    read_only: str | None = None

    # -- connections: supplied by the backend ------------------------------------
    @abstractmethod
    def _connection(self, write: bool) -> AbstractContextManager[Any]:
        """A connection; with ``write``, in a transaction holding the backend's write lock
        for its writes, committed at the end and rolled back on any exception. Without
        ``write`` the caller runs one statement (a read may skip BEGIN/COMMIT)."""

    def _opening_connection(self, write: bool) -> AbstractContextManager[Any]:
        """The connection used while opening (default: the usual one)."""
        return self._connection(write)

    @contextmanager
    def _tx(self, write: bool = True, opening: bool = False) -> Iterator[Any]:
        """One transaction (or one read); driver errors become one-line StoreErrors."""
        try:
            connect = self._opening_connection if opening else self._connection
            with connect(write) as db:
                yield db
        except self.driver_errors as exc:
            what = "cannot open the" if opening else "the"
            verb = ":" if opening else " failed:"
            url = getattr(self, "url", "")
            detail = redact_message(one_line(exc), url) if url else one_line(exc)
            raise StoreError(
                f"{what} {self.dialect.name} store at {self.where}{verb} {detail}"
            ) from None

    def _open_schema(self) -> None:
        """Bring the schema to :data:`migrations.LATEST`; a current store is only read."""
        with self._tx(write=False, opening=True) as db:
            version = migrations.current_version(db, self.dialect)
        migrations.check_known(version, self.where)
        if version == migrations.LATEST:
            return
        if self.read_only:
            raise StoreError(
                f"cannot open the {self.dialect.name} store at {self.where}: {self.read_only}"
                f" (its schema needs an upgrade, from version {version})"
            )
        with self._tx(opening=True) as db:
            migrations.migrate(db, self.dialect, self.where)

    # -- executions ---------------------------------------------------------
    def create_execution(self, execution: Execution, events: Sequence[Event] = ()) -> list[Event]:
        d = self.dialect
        plan = execution.plan
        row = (
            execution.id,
            execution.status.value,
            d.dump_time(execution.updated_at),
            execution_json(execution),
            plan_json(execution),
            execution.license_id,
            plan.workflow,
            plan.name,
        )
        # Its plan's tasks: the agent of each attempt written later is looked up here.
        plan_rows = [(execution.id, t.id, t.agent) for t in plan.tasks]
        ev_rows = event_rows(events)
        with self._tx() as db:
            d.lock_events(db, [e.execution_id for e in events])
            if db.execute(d.sql("SELECT 1 FROM executions WHERE id = ?"), row[:1]).fetchone():
                raise Conflict(f"execution {execution.id} already exists")
            inserted = db.execute(
                d.sql(
                    "INSERT INTO executions (id, status, owner, heartbeat_at, updated_at,"
                    " lease_token, data, plan, license_id, workflow, plan_name)"
                    " VALUES (?, ?, NULL, NULL, ?, 0, ?json, ?json, ?, ?, ?)"
                    + (" RETURNING plan" if d.json_rewritten else "")
                ),
                row,
            )
            # The plan as it will be read back: a later read of it is not parsed again.
            stored = inserted.fetchone()[0] if d.json_rewritten else row[4]
            d.executemany(
                db,
                d.sql(
                    "INSERT INTO plan_tasks (execution_id, task_id, agent) VALUES (?, ?, ?)"
                    " ON CONFLICT (execution_id, task_id) DO NOTHING"
                ),
                plan_rows,
            )
            appended = self._append(db, events, ev_rows)
        _PLANS.put(stored, plan)
        return appended

    def get_execution(self, execution_id: str) -> Execution | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?"),
                (execution_id,),
            ).fetchone()
        return self._execution(row) if row else None

    def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql("SELECT status FROM executions WHERE id = ?"), (execution_id,)
            ).fetchone()
        return ExecutionStatus(row[0]) if row else None

    def lease(self, execution_id: str) -> Lease | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql(
                    "SELECT owner, heartbeat_at, lease_token FROM executions WHERE id = ?"
                ),
                (execution_id,),
            ).fetchone()
        if row is None:
            return None
        return Lease(owner=row[0], heartbeat_at=self.dialect.load_time(row[1]), token=int(row[2]))

    def list_executions(self, limit: int = 20, license_id: str | None = None) -> list[Execution]:
        where = "WHERE license_id = ?" if license_id else ""
        params: tuple[Any, ...] = (license_id, limit) if license_id else (limit,)
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(
                    f"SELECT {_EXECUTION_COLUMNS} FROM executions {where}"
                    " ORDER BY updated_at DESC LIMIT ?"
                ),
                params,
            ).fetchall()
        return [self._execution(r) for r in rows]

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
        if not expected:
            raise ValueError("transition needs at least one expected status")
        if decide and checkpoint is None:
            raise ValueError("decide=True needs the decided checkpoint")
        d = self.dialect
        statuses = sorted(ExecutionStatus(s).value for s in expected)
        sql = (
            "UPDATE executions SET status = ?, updated_at = ?, data = ?json"
            f" WHERE id = ? AND status IN ({', '.join('?' * len(statuses))})"
        )
        args: list[Any] = [
            execution.status.value,
            d.dump_time(execution.updated_at),
            execution_json(execution),
            execution.id,
            *statuses,
        ]
        if token is not None:
            sql += " AND lease_token = ?"
            args.append(token)
        cp = (checkpoint, checkpoint_json(checkpoint)) if checkpoint is not None else None
        gate_row = (
            (execution.id, gate[1].stage, gate[0], gate_json(execution.id, gate[1]))
            if gate is not None
            else None
        )
        ev_rows = event_rows(events)
        with self._tx() as db:
            d.lock_events(db, [e.execution_id for e in events])  # before the row lock
            if db.execute(d.sql(sql), args).rowcount != 1:
                self._refuse(db, execution.id, token, decide)
            if cp is not None:
                self._write_checkpoint(db, cp[0], cp[1], decide)
            if gate_row is not None:
                db.execute(
                    d.upsert(
                        "gate_results",
                        ("execution_id", "stage", "round", "data"),
                        ("execution_id", "stage", "round"),
                        json=("data",),
                    ),
                    gate_row,
                )
            return self._append(db, events, ev_rows)

    def _refuse(self, db: Any, execution_id: str, token: int | None, decide: bool) -> None:
        """Raise why a conditional update of the execution matched no row."""
        row = db.execute(
            self.dialect.sql("SELECT status, lease_token, owner FROM executions WHERE id = ?"),
            (execution_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"execution {execution_id} not found")
        status, stored, owner = row
        if token is not None and int(stored) != token:
            raise LeaseLost(_lease_lost(execution_id, owner))
        if decide:
            raise Conflict(f"execution {execution_id} was already decided (now {status})")
        raise Conflict(f"execution {execution_id} is already {status}")

    def _write_checkpoint(self, db: Any, cp: CheckpointState, data: str, decide: bool) -> None:
        d = self.dialect
        decision = cp.decision.value if cp.decision is not None else None
        key = (cp.execution_id, cp.stage, cp.round)
        if not decide:
            db.execute(
                d.upsert(
                    "checkpoints",
                    (
                        "execution_id",
                        "stage",
                        "round",
                        "decision",
                        "checkpoint_type",
                        "feedback",
                        "data",
                    ),
                    ("execution_id", "stage", "round"),
                    json=("data",),
                ),
                (*key, decision, cp.type, cp.feedback, data),
            )
            return
        cur = db.execute(
            d.sql(
                "UPDATE checkpoints SET decision = ?, checkpoint_type = ?, feedback = ?,"
                " data = ?json"
                " WHERE execution_id = ? AND stage = ? AND round = ? AND decision IS NULL"
            ),
            (decision, cp.type, cp.feedback, data, *key),
        )
        if cur.rowcount == 1:
            return
        row = db.execute(
            d.sql(
                "SELECT decision FROM checkpoints"
                " WHERE execution_id = ? AND stage = ? AND round = ?"
            ),
            key,
        ).fetchone()
        where = f"stage {cp.stage} (round {cp.round}) of execution {cp.execution_id}"
        if row is None:
            raise NotFound(f"no checkpoint at {where}")
        raise Conflict(f"the checkpoint at {where} was already decided: {row[0]}")

    def claim(
        self, execution_id: str, owner: str, expected_token: int, now: datetime
    ) -> int | None:
        with self._tx() as db:
            cur = db.execute(
                self.dialect.sql(
                    "UPDATE executions SET owner = ?, heartbeat_at = ?,"
                    " lease_token = lease_token + 1 WHERE id = ? AND lease_token = ?"
                ),
                (owner, self.dialect.dump_time(now), execution_id, expected_token),
            )
            return expected_token + 1 if cur.rowcount == 1 else None

    def release(self, execution_id: str, owner: str, token: int, now: datetime) -> bool:
        return self._owner_update("owner = NULL, heartbeat_at = ?", execution_id, owner, token, now)

    def heartbeat(self, execution_id: str, owner: str, token: int, now: datetime) -> bool:
        return self._owner_update("heartbeat_at = ?", execution_id, owner, token, now)

    def _owner_update(
        self, assign: str, execution_id: str, owner: str, token: int, now: datetime
    ) -> bool:
        with self._tx() as db:
            cur = db.execute(
                self.dialect.sql(
                    f"UPDATE executions SET {assign} WHERE id = ? AND owner = ? AND lease_token = ?"
                ),
                (self.dialect.dump_time(now), execution_id, owner, token),
            )
            return bool(cur.rowcount == 1)

    def set_gate_process(
        self, execution_id: str, process: dict[str, Any] | None, *, token: int | None = None
    ) -> None:
        value = json.dumps(process) if process is not None else None
        with self._tx() as db:
            if token is not None:
                self._check_token(db, execution_id, token)
            cur = db.execute(
                self.dialect.sql("UPDATE executions SET gate_process = ? WHERE id = ?"),
                (value, execution_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"execution {execution_id} not found")

    def gate_process(self, execution_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql("SELECT gate_process FROM executions WHERE id = ?"),
                (execution_id,),
            ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    # -- tasks ----------------------------------------------------------------
    def save_task_results(
        self,
        results: Sequence[TaskResult],
        events: Sequence[Event] = (),
        *,
        token: int | None = None,
    ) -> list[Event]:
        if not results and not events:
            return []
        fenced = _one_execution(results, events) if token is not None else None
        d = self.dialect
        rows = task_result_rows(results)
        ev_rows = event_rows(events)
        with self._tx() as db:
            # Taken for results too: a record's check below sees every earlier write.
            d.lock_events(db, [r.execution_id for r in results] + [e.execution_id for e in events])
            if fenced is not None and token is not None:
                self._check_token(db, fenced, token)
            if results:
                stored = self._stored_statuses(db, results)
                kept, kept_events = first_writes(stored, results, events)
                rows = [rows[i] for i in kept]
                events = [events[i] for i in kept_events]
                ev_rows = [ev_rows[i] for i in kept_events]
            d.executemany(db, self._task_upsert(), rows)
            return self._append(db, events, ev_rows)

    def _stored_statuses(
        self, db: Any, results: Sequence[TaskResult]
    ) -> dict[tuple[str, str, int, int], TaskStatus]:
        """The stored status of every attempt of the results' tasks (one read per 500)."""
        tasks = sorted({(r.execution_id, r.task_id) for r in results})
        found: dict[tuple[str, str, int, int], TaskStatus] = {}
        for execution_id in sorted({e for e, _ in tasks}):
            ids = [t for e, t in tasks if e == execution_id]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = db.execute(
                    self.dialect.sql(
                        "SELECT task_id, round, attempt, status FROM task_results"
                        f" WHERE execution_id = ? AND task_id IN ({marks})"
                    ),
                    (execution_id, *chunk),
                ).fetchall()
                for task_id, rnd, attempt, status in rows:
                    found[(execution_id, task_id, int(rnd), int(attempt))] = TaskStatus(status)
        return found

    def start_attempt(
        self, result: TaskResult, events: Sequence[Event] = (), *, token: int | None = None
    ) -> tuple[TaskResult | None, list[Event]]:
        d = self.dialect
        rows = task_result_rows([result])
        ev_rows = event_rows(events)
        with self._tx() as db:
            d.lock_events(db, [e.execution_id for e in events])
            if token is not None:
                self._check_token(db, result.execution_id, token)
            existing = self._attempt_row(
                db, result.execution_id, result.task_id, result.round, result.attempt
            )
            if existing is not None:
                return existing, []
            d.executemany(db, self._task_upsert(), rows)
            return None, self._append(db, events, ev_rows)

    def attempt_record(
        self, execution_id: str, task_id: str, round: int, attempt: int
    ) -> TaskResult | None:
        with self._tx(write=False) as db:
            return self._attempt_row(db, execution_id, task_id, round, attempt)

    def _attempt_row(
        self, db: Any, execution_id: str, task_id: str, round: int, attempt: int
    ) -> TaskResult | None:
        """The record of this attempt or a later one of the task (latest first)."""
        row = db.execute(
            self.dialect.sql(
                "SELECT data FROM task_results WHERE execution_id = ? AND task_id = ?"
                " AND round = ? AND attempt >= ? ORDER BY attempt DESC LIMIT 1"
            ),
            (execution_id, task_id, round, attempt),
        ).fetchone()
        return TaskResult.model_validate_json(row[0]) if row else None

    def _task_upsert(self) -> str:
        return self.dialect.upsert(
            "task_results",
            (
                "execution_id",
                "task_id",
                "round",
                "attempt",
                "status",
                "agent",
                "duration_seconds",
                "llm_calls",
                "tokens_in",
                "tokens_out",
                "cost",
                "data",
            ),
            ("execution_id", "task_id", "round", "attempt"),
            json=("data",),
            renumber=True,
            # The agent its plan gave the task (NULL for a task its plan does not have).
            expressions={
                "agent": "(SELECT agent FROM plan_tasks WHERE execution_id = ? AND task_id = ?)"
            },
        )

    def task_results(self, execution_id: str, round: int | None = None) -> list[TaskResult]:
        # Each task's latest attempt (in its latest round, unless a round is given),
        # in the order they were last written.
        d = self.dialect
        in_round = " AND round = ?" if round is not None else ""
        sql = (
            "SELECT data FROM ("
            f" SELECT data, {d.write_order} AS written_order, ROW_NUMBER() OVER"
            " (PARTITION BY task_id ORDER BY round DESC, attempt DESC) AS latest"
            f" FROM task_results WHERE execution_id = ?{in_round}"
            ") t WHERE latest = 1 ORDER BY written_order"
        )
        args: tuple[Any, ...] = (execution_id,) if round is None else (execution_id, round)
        with self._tx(write=False) as db:
            rows = db.execute(d.sql(sql), args).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    def task_attempts(self, execution_id: str, task_id: str) -> list[TaskResult]:
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(
                    "SELECT data FROM task_results WHERE execution_id = ? AND task_id = ?"
                    " ORDER BY round, attempt"
                ),
                (execution_id, task_id),
            ).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    def llm_usage(self, execution_id: str) -> ExecutionUsage:
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(
                    "SELECT task_id, SUM(llm_calls), SUM(tokens_in), SUM(tokens_out), SUM(cost)"
                    " FROM task_results WHERE execution_id = ?"
                    " AND (llm_calls > 0 OR tokens_in > 0 OR tokens_out > 0 OR cost > 0)"
                    " GROUP BY task_id ORDER BY task_id"
                ),
                (execution_id,),
            ).fetchall()
        tasks = {
            str(task): LLMUsage(
                calls=int(calls), tokens_in=int(t_in), tokens_out=int(t_out), cost=float(cost)
            )
            for task, calls, t_in, t_out, cost in rows
        }
        total = sum(tasks.values(), LLMUsage())
        return ExecutionUsage(**total.model_dump(), tasks=tasks)

    def running_attempts(self, execution_id: str) -> list[TaskResult]:
        d = self.dialect
        with self._tx(write=False) as db:
            rows = db.execute(
                d.sql(
                    "SELECT data FROM task_results WHERE execution_id = ? AND status = ?"
                    f" ORDER BY {d.write_order}"
                ),
                (execution_id, TaskStatus.RUNNING.value),
            ).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    # -- checkpoints and gates -------------------------------------------------
    def checkpoints(self, execution_id: str) -> list[CheckpointState]:
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(
                    "SELECT data FROM checkpoints WHERE execution_id = ? ORDER BY stage, round"
                ),
                (execution_id,),
            ).fetchall()
        return [CheckpointState.model_validate_json(r[0]) for r in rows]

    def gate_result(self, execution_id: str, stage: int, round: int) -> GateResult | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql(
                    "SELECT data FROM gate_results"
                    " WHERE execution_id = ? AND stage = ? AND round = ?"
                ),
                (execution_id, stage, round),
            ).fetchone()
        return GateResult.model_validate_json(row[0]) if row else None

    # -- events ----------------------------------------------------------------
    def add_events(self, events: Sequence[Event], *, token: int | None = None) -> list[Event]:
        if not events:
            return []
        fenced = _one_execution((), events) if token is not None else None
        ev_rows = event_rows(events)
        with self._tx() as db:
            self.dialect.lock_events(db, [e.execution_id for e in events])
            if fenced is not None and token is not None:
                self._check_token(db, fenced, token)
            return self._append(db, events, ev_rows)

    def events(self, execution_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(
                    "SELECT seq, data FROM events WHERE execution_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?"
                ),
                (execution_id, after, limit),
            ).fetchall()
        return events_from_rows(rows)

    def last_event_seq(self, execution_id: str) -> int:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql("SELECT MAX(seq) FROM events WHERE execution_id = ?"),
                (execution_id,),
            ).fetchone()
        return int(row[0] or 0) if row else 0

    # -- helpers -----------------------------------------------------------------
    def _append(
        self, db: Any, events: Sequence[Event], rows: Sequence[tuple[str, str, str]]
    ) -> list[Event]:
        """Insert events (their execution's event lock taken); returns them with ``seq``."""
        if not rows:
            return []
        seqs = self.dialect.insert_returning(
            db,
            self.dialect.sql("INSERT INTO events (execution_id, kind, data) VALUES (?, ?, ?json)"),
            rows,
        )
        return [e.model_copy(update={"seq": s}) for e, s in zip(events, seqs, strict=True)]

    def _check_token(self, db: Any, execution_id: str, token: int) -> None:
        """Raise LeaseLost (or NotFound) unless the execution's lease token is ``token``."""
        row = db.execute(
            self.dialect.sql(
                "SELECT lease_token, owner FROM executions WHERE id = ?" + self.dialect.share_lock
            ),
            (execution_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"execution {execution_id} not found")
        if int(row[0]) != token:
            raise LeaseLost(_lease_lost(execution_id, row[1]))

    def _execution(self, row: Sequence[Any]) -> Execution:
        plan = _PLANS.get(row[1])
        return execution_from_row(row[0], plan, row[2], self.dialect.load_time(row[3]), row[4])


def first_writes(
    stored: dict[tuple[str, str, int, int], TaskStatus],
    results: Sequence[TaskResult],
    events: Sequence[Event],
) -> tuple[list[int], list[int]]:
    """Which of ``results`` and ``events`` (their indexes) to write, given the stored
    status of each attempt: each record and event is written once.

    An attempt whose stored record is final (the state table: a final record has no
    transition, core/states.py) is not written again, nor are its events; over a
    stored start, the record is written (its process group, its end) but not its
    ``task.started`` event again; after a final record in the batch, a record of the
    same attempt is not written, and an attempt's event of one kind is written once.
    Repeats come from a dependent that wrote its dependency's records ahead of its
    own (core/tasklog.py, causal order) before or after the dependency's process did.
    """
    drop: set[tuple[str, str, int, int]] = set()
    started: set[tuple[str, str, int, int]] = set()
    batch: dict[tuple[str, str, int, int], TaskStatus] = {}
    kept: list[int] = []
    for i, r in enumerate(results):
        key = (r.execution_id, r.task_id, r.round, r.attempt)
        old = stored.get(key)
        if old in TASK_FINAL:
            drop.add(key)
            continue
        if old is TaskStatus.RUNNING:
            started.add(key)  # its record may change (its process group added, its end)
        if batch.get(key) in TASK_FINAL:
            continue
        batch[key] = r.status
        kept.append(i)
    seen: set[tuple[tuple[str, str, int, int], str]] = set()
    kept_events: list[int] = []
    for j, e in enumerate(events):
        attempt, rnd = e.data.get("attempt"), e.data.get("round")
        if e.task_id is not None and isinstance(attempt, int) and isinstance(rnd, int):
            key = (e.execution_id, e.task_id, rnd, attempt)
            if key in drop or (key in started and e.kind == EventKind.TASK_STARTED):
                continue
            if (key, e.kind) in seen:
                continue
            seen.add((key, e.kind))
        kept_events.append(j)
    return kept, kept_events


def _one_execution(results: Sequence[TaskResult], events: Sequence[Event]) -> str:
    """The one execution that fenced records belong to (ValueError if several)."""
    ids = {r.execution_id for r in results} | {e.execution_id for e in events}
    if len(ids) != 1:
        raise ValueError(f"a fenced write must be for one execution, not {sorted(ids)}")
    return ids.pop()


def _lease_lost(execution_id: str, owner: str | None) -> str:
    by = owner or "another process"
    return f"lost the lease on execution {execution_id}: {by} took it over"
