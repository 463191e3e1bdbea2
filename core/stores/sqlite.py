"""The embedded store: one SQLite file in WAL mode, one connection per thread.

Dask workers in other processes write task results to the same file; WAL lets
readers (``connectsw watch``) go on while one writer commits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    ExecutionStatus,
    GateResult,
    TaskResult,
)
from connectsw.core.stores.base import Store
from connectsw.core.stores.rows import (
    event_json,
    events_from_rows,
    execution_from_row,
    execution_json,
    task_result_rows,
)

LOCK_TIMEOUT = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    owner TEXT,
    heartbeat_at TEXT,
    updated_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_updated ON executions (updated_at);
CREATE TABLE IF NOT EXISTS task_results (
    execution_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (execution_id, task_id, round, attempt)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS gate_results (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id, seq);
"""


class SQLiteStore(Store):
    """Store backed by a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        _begin(db)
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- executions ---------------------------------------------------------
    def create_execution(self, execution: Execution) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO executions (id, status, owner, heartbeat_at, updated_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                _execution_row(execution),
            )

    def get_execution(self, execution_id: str) -> Execution | None:
        row = (
            self._conn()
            .execute(
                "SELECT data, owner, heartbeat_at FROM executions WHERE id = ?", (execution_id,)
            )
            .fetchone()
        )
        return _execution(row) if row else None

    def execution_status(self, execution_id: str) -> ExecutionStatus | None:
        row = (
            self._conn()
            .execute("SELECT status FROM executions WHERE id = ?", (execution_id,))
            .fetchone()
        )
        return ExecutionStatus(row[0]) if row else None

    def save_execution(self, execution: Execution, events: Sequence[Event] = ()) -> list[Event]:
        with self._tx() as db:
            row = _execution_row(execution)
            db.execute(
                "UPDATE executions SET status = ?, updated_at = ?, data = ?"
                " WHERE id = ? AND (status != 'cancelled' OR ? = 'cancelled')",
                (row[1], row[4], row[5], row[0], row[1]),
            )
            return _insert_events(db, events)

    def list_executions(self, limit: int = 20) -> list[Execution]:
        rows = (
            self._conn()
            .execute(
                "SELECT data, owner, heartbeat_at FROM executions ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [_execution(r) for r in rows]

    def claim_execution(
        self, execution_id: str, owner: str | None, expected: str | None, now: datetime
    ) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE executions SET owner = ?, heartbeat_at = ? WHERE id = ? AND owner IS ?",
                (owner, now.isoformat(), execution_id, expected),
            )
            return cur.rowcount == 1

    def heartbeat(self, execution_id: str, owner: str, now: datetime) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE executions SET heartbeat_at = ? WHERE id = ? AND owner = ?",
                (now.isoformat(), execution_id, owner),
            )
            return cur.rowcount == 1

    # -- tasks ----------------------------------------------------------------
    def save_task_result(self, result: TaskResult, events: Sequence[Event] = ()) -> list[Event]:
        return self.save_task_results([result], events)

    def save_task_results(
        self, results: Sequence[TaskResult], events: Sequence[Event]
    ) -> list[Event]:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO task_results"
                " (execution_id, task_id, round, attempt, status, data) VALUES (?, ?, ?, ?, ?, ?)",
                task_result_rows(results),
            )
            return _insert_events(db, events)

    def task_results(self, execution_id: str, round: int | None = None) -> list[TaskResult]:
        sql = (
            "SELECT data FROM task_results t WHERE execution_id = ?"
            " AND attempt = (SELECT MAX(attempt) FROM task_results u WHERE"
            " u.execution_id = t.execution_id AND u.task_id = t.task_id AND u.round = t.round)"
        )
        args: tuple[object, ...] = (execution_id,)
        if round is not None:
            sql += " AND round = ?"
            args += (round,)
        else:
            sql += (
                " AND round = (SELECT MAX(round) FROM task_results v WHERE"
                " v.execution_id = t.execution_id AND v.task_id = t.task_id)"
            )
        rows = self._conn().execute(sql + " ORDER BY rowid", args).fetchall()
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    def task_attempts(self, execution_id: str, task_id: str) -> list[TaskResult]:
        rows = (
            self._conn()
            .execute(
                "SELECT data FROM task_results WHERE execution_id = ? AND task_id = ?"
                " ORDER BY round, attempt",
                (execution_id, task_id),
            )
            .fetchall()
        )
        return [TaskResult.model_validate_json(r[0]) for r in rows]

    # -- checkpoints and gates -------------------------------------------------
    def save_checkpoint(self, checkpoint: CheckpointState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (execution_id, stage, round, data)"
                " VALUES (?, ?, ?, ?)",
                (
                    checkpoint.execution_id,
                    checkpoint.stage,
                    checkpoint.round,
                    checkpoint.model_dump_json(),
                ),
            )

    def checkpoints(self, execution_id: str) -> list[CheckpointState]:
        rows = (
            self._conn()
            .execute(
                "SELECT data FROM checkpoints WHERE execution_id = ? ORDER BY stage, round",
                (execution_id,),
            )
            .fetchall()
        )
        return [CheckpointState.model_validate_json(r[0]) for r in rows]

    def save_gate_result(self, execution_id: str, round: int, result: GateResult) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO gate_results (execution_id, stage, round, data)"
                " VALUES (?, ?, ?, ?)",
                (execution_id, result.stage, round, result.model_dump_json()),
            )

    def gate_result(self, execution_id: str, stage: int, round: int) -> GateResult | None:
        row = (
            self._conn()
            .execute(
                "SELECT data FROM gate_results WHERE execution_id = ? AND stage = ? AND round = ?",
                (execution_id, stage, round),
            )
            .fetchone()
        )
        return GateResult.model_validate_json(row[0]) if row else None

    # -- events ----------------------------------------------------------------
    def add_events(self, events: list[Event]) -> list[Event]:
        with self._tx() as db:
            return _insert_events(db, events)

    def events(self, execution_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, data FROM events WHERE execution_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (execution_id, after, limit),
            )
            .fetchall()
        )
        return events_from_rows(rows)

    def last_event_seq(self, execution_id: str) -> int:
        row = (
            self._conn()
            .execute("SELECT MAX(seq) FROM events WHERE execution_id = ?", (execution_id,))
            .fetchone()
        )
        return int(row[0] or 0)


def _begin(db: sqlite3.Connection) -> None:
    """Take the write lock, retrying quickly while another process holds it.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries; task writes
    from several Dask workers take well under a millisecond, so spin finer.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT
    pause = 0.0001
    db.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.005)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT * 1000)}")


def _execution_row(e: Execution) -> tuple[str, str, str | None, str | None, str, str]:
    hb = e.heartbeat_at.isoformat() if e.heartbeat_at else None
    return (e.id, e.status.value, e.owner, hb, e.updated_at.isoformat(), execution_json(e))


def _execution(row: tuple[str, str | None, str | None]) -> Execution:
    return execution_from_row(row[0], row[1], datetime.fromisoformat(row[2]) if row[2] else None)


def _insert_events(db: sqlite3.Connection, events: Sequence[Event]) -> list[Event]:
    out = []
    for event in events:
        cur = db.execute(
            "INSERT INTO events (execution_id, kind, data) VALUES (?, ?, ?)",
            (event.execution_id, event.kind, event_json(event)),
        )
        out.append(event.model_copy(update={"seq": cur.lastrowid}))
    return out
