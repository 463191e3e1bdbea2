"""The production store: PostgreSQL through psycopg 3 and a psycopg-pool connection pool.

The schema mirrors the SQLite store's (records as JSON, keys as columns), so the
two backends pass the same contract tests. Every method is one transaction.

Events carry a global ``seq``; a watcher reads ``seq > last seen``. Sequence
values are handed out before commit, so two transactions could commit their
events of one execution out of ``seq`` order and a watcher would skip one. Each
transaction that appends events therefore first takes a transaction-scoped
advisory lock per execution it writes for: events of one execution commit in
``seq`` order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from connectsw.core.errors import StoreError, one_line
from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    ExecutionStatus,
    GateResult,
    TaskResult,
)
from connectsw.core.stores.base import Store, redact
from connectsw.core.stores.rows import (
    event_json,
    events_from_rows,
    execution_from_row,
    execution_json,
    task_result_rows,
)

CONNECT_TIMEOUT = 10.0
POOL_MAX = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    owner TEXT,
    heartbeat_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_updated ON executions (updated_at);
CREATE TABLE IF NOT EXISTS task_results (
    execution_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    written BIGINT GENERATED ALWAYS AS IDENTITY,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, task_id, round, attempt)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS gate_results (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id, seq);
"""

# Serializes schema creation between processes opening a new database at once.
_SCHEMA_LOCK = 0x636F6E6E  # "conn"


class PostgresStore(Store):
    """Store backed by a PostgreSQL database (``postgresql://user:pw@host:port/db``)."""

    def __init__(self, url: str, max_size: int = POOL_MAX) -> None:
        self.url = url
        # One direct connection first: a wrong URL fails now, with the server's reason.
        try:
            with psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)) as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                db.execute(SCHEMA)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot open the PostgreSQL store at {redact(url)}: {one_line(exc)}"
            ) from None
        self._max_size = max_size
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()

    def _get_pool(self) -> ConnectionPool[Any]:
        """The connection pool, opened on first use (and again after :meth:`close`)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    kwargs={"connect_timeout": int(CONNECT_TIMEOUT)},
                    open=True,
                    name="connectsw-store",
                )
            return self._pool

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on a pooled connection; database errors become StoreError."""
        try:
            pool = self._get_pool()
            with pool.connection(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreError(
                f"PostgreSQL store at {redact(self.url)} failed: {one_line(exc)}"
            ) from None

    def close(self) -> None:
        """Close the pool's connections; a later call opens a new pool."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- executions ---------------------------------------------------------
    def create_execution(self, execution: Execution) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO executions (id, status, owner, heartbeat_at, updated_at, data)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                _execution_row(execution),
            )

    def get_execution(self, execution_id: str) -> Execution | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT data::text, owner, heartbeat_at FROM executions WHERE id = %s",
                (execution_id,),
            ).fetchone()
        return _execution(row) if row else None

    def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT status FROM executions WHERE id = %s", (execution_id,)
            ).fetchone()
        return ExecutionStatus(row[0]) if row else None

    def save_execution(self, execution: Execution, events: Sequence[Event] = ()) -> list[Event]:
        eid, status, _, _, updated, data = _execution_row(execution)
        with self._tx() as db:
            _lock_events(db, events)
            db.execute(
                "UPDATE executions SET status = %s, updated_at = %s, data = %s::jsonb"
                " WHERE id = %s AND (status <> 'cancelled' OR %s = 'cancelled')",
                (status, updated, data, eid, status),
            )
            return _insert_events(db, events)

    def list_executions(self, limit: int = 20) -> list[Execution]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT data::text, owner, heartbeat_at FROM executions"
                " ORDER BY updated_at DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [_execution(r) for r in rows]

    def claim_execution(
        self, execution_id: str, owner: str | None, expected: str | None, now: datetime
    ) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE executions SET owner = %s, heartbeat_at = %s"
                " WHERE id = %s AND owner IS NOT DISTINCT FROM %s",
                (owner, now, execution_id, expected),
            )
            return cur.rowcount == 1

    def heartbeat(self, execution_id: str, owner: str, now: datetime) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE executions SET heartbeat_at = %s WHERE id = %s AND owner = %s",
                (now, execution_id, owner),
            )
            return cur.rowcount == 1

    # -- tasks ----------------------------------------------------------------
    def save_task_result(self, result: TaskResult, events: Sequence[Event] = ()) -> list[Event]:
        return self.save_task_results([result], events)

    def save_task_results(
        self, results: Sequence[TaskResult], events: Sequence[Event]
    ) -> list[Event]:
        with self._tx() as db:
            _lock_events(db, events)
            if results:
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO task_results"
                        " (execution_id, task_id, round, attempt, status, data)"
                        " VALUES (%s, %s, %s, %s, %s, %s::jsonb)"
                        " ON CONFLICT (execution_id, task_id, round, attempt) DO UPDATE"
                        " SET status = EXCLUDED.status, data = EXCLUDED.data, written = DEFAULT",
                        task_result_rows(results),
                    )
            return _insert_events(db, events)

    def task_results(self, execution_id: str, round: int | None = None) -> list[TaskResult]:
        # Each task's latest attempt (in its latest round, unless a round is given).
        sql = (
            "SELECT data::text FROM ("
            " SELECT DISTINCT ON (task_id) data, written FROM task_results"
            " WHERE execution_id = %s{round}"
            " ORDER BY task_id, round DESC, attempt DESC"
            ") latest ORDER BY written"
        )
        args: tuple[object, ...] = (execution_id,)
        if round is not None:
            args += (round,)
        with self._tx() as db:
            rows = db.execute(
                sql.format(round=" AND round = %s" if round is not None else ""), args
            ).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    def task_attempts(self, execution_id: str, task_id: str) -> list[TaskResult]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT data::text FROM task_results WHERE execution_id = %s AND task_id = %s"
                " ORDER BY round, attempt",
                (execution_id, task_id),
            ).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    # -- checkpoints and gates -------------------------------------------------
    def save_checkpoint(self, checkpoint: CheckpointState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO checkpoints (execution_id, stage, round, data)"
                " VALUES (%s, %s, %s, %s::jsonb)"
                " ON CONFLICT (execution_id, stage, round) DO UPDATE SET data = EXCLUDED.data",
                (
                    checkpoint.execution_id,
                    checkpoint.stage,
                    checkpoint.round,
                    checkpoint.model_dump_json(),
                ),
            )

    def checkpoints(self, execution_id: str) -> list[CheckpointState]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT data::text FROM checkpoints WHERE execution_id = %s ORDER BY stage, round",
                (execution_id,),
            ).fetchall()
        return [CheckpointState.model_validate_json(r[0]) for r in rows]

    def save_gate_result(self, execution_id: str, round: int, result: GateResult) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO gate_results (execution_id, stage, round, data)"
                " VALUES (%s, %s, %s, %s::jsonb)"
                " ON CONFLICT (execution_id, stage, round) DO UPDATE SET data = EXCLUDED.data",
                (execution_id, result.stage, round, result.model_dump_json()),
            )

    def gate_result(self, execution_id: str, stage: int, round: int) -> GateResult | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT data::text FROM gate_results"
                " WHERE execution_id = %s AND stage = %s AND round = %s",
                (execution_id, stage, round),
            ).fetchone()
        return GateResult.model_validate_json(row[0]) if row else None

    # -- events ----------------------------------------------------------------
    def add_events(self, events: list[Event]) -> list[Event]:
        if not events:
            return []
        with self._tx() as db:
            _lock_events(db, events)
            return _insert_events(db, events)

    def events(self, execution_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, data::text FROM events WHERE execution_id = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (execution_id, after, limit),
            ).fetchall()
        return events_from_rows(rows)

    def last_event_seq(self, execution_id: str) -> int:
        with self._tx() as db:
            row = db.execute(
                "SELECT MAX(seq) FROM events WHERE execution_id = %s", (execution_id,)
            ).fetchone()
        return int(row[0] or 0) if row else 0


def _lock_events(db: psycopg.Connection[Any], events: Sequence[Event]) -> None:
    """Take each written execution's event lock, in a fixed order (no deadlocks)."""
    for eid in sorted({e.execution_id for e in events}):
        db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (eid,))


def _execution_row(
    e: Execution,
) -> tuple[str, str, str | None, datetime | None, datetime, str]:
    return (e.id, e.status.value, e.owner, e.heartbeat_at, e.updated_at, execution_json(e))


def _execution(row: tuple[Any, ...]) -> Execution:
    return execution_from_row(row[0], row[1], row[2].astimezone(UTC) if row[2] else None)


def _insert_events(db: psycopg.Connection[Any], events: Sequence[Event]) -> list[Event]:
    """Append events in one pipelined round trip; returns them with their ``seq``."""
    if not events:
        return []
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO events (execution_id, kind, data) VALUES (%s, %s, %s::jsonb)"
            " RETURNING seq",
            [(e.execution_id, e.kind, event_json(e)) for e in events],
            returning=True,
        )
        seqs: list[int] = []
        while True:  # one result set per event
            seqs += [row[0] for row in cur.fetchall()]
            if not cur.nextset():
                break
    return [e.model_copy(update={"seq": seq}) for e, seq in zip(events, seqs, strict=True)]
