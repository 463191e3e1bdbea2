"""License sessions in the relational store (the SQL for them, for every backend).

A mixin of :class:`~connectsw.core.stores.sql.SQLStore`. Rows hold a digest of
the session token, never the token. Admission is exact under concurrency: the
count of a license's active sessions and the insert of a new one happen in one
transaction that holds the license's row lock (PostgreSQL ``FOR UPDATE``;
SQLite's write transaction).
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectsw.core.errors import NotFound

if TYPE_CHECKING:
    from connectsw.core.stores.dialects import Dialect


@dataclass(frozen=True)
class SecurityEvent:
    """A license flagged (never blocked) by a check: ``kind`` and its evidence."""

    ts: datetime
    license_id: str
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class SessionRecord:
    """One session of a license; times are timezone-aware UTC."""

    id: str
    license_id: str
    token_digest: str
    ip: str
    user_agent: str
    created_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


_COLUMNS = (
    "id, license_id, token_digest, ip, user_agent, created_at, heartbeat_at, expires_at, ended_at"
)
_ACTIVE = "license_id = ? AND ended_at IS NULL AND heartbeat_at > ? AND expires_at > ?"


class SessionRecords:
    """Open, find, keep alive and end sessions."""

    dialect: Dialect

    if TYPE_CHECKING:  # provided by SQLStore

        def _tx(self, write: bool = True, opening: bool = False) -> AbstractContextManager[Any]: ...

    def _session(self, row: Any) -> SessionRecord:
        t = self.dialect.load_time
        created, beat, expires = t(row[5]), t(row[6]), t(row[7])
        assert created is not None and beat is not None and expires is not None
        return SessionRecord(
            id=row[0],
            license_id=row[1],
            token_digest=row[2],
            ip=row[3],
            user_agent=row[4],
            created_at=created,
            heartbeat_at=beat,
            expires_at=expires,
            ended_at=t(row[8]),
        )

    def open_session(
        self, session: SessionRecord, active_since: datetime, limit: int
    ) -> int | None:
        """Insert ``session`` unless the license already has ``limit`` active sessions.

        Active: not ended, a heartbeat after ``active_since`` and not expired at
        ``session.created_at``. Returns how many were active before (None: refused,
        nothing written). NotFound if the license does not exist.
        """
        d = self.dialect
        with self._tx() as db:
            row = db.execute(
                d.sql(f"SELECT id FROM licenses WHERE id = ?{d.update_lock}"),
                (session.license_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no license {session.license_id!r}")
            (active,) = db.execute(
                d.sql(f"SELECT COUNT(*) FROM sessions WHERE {_ACTIVE}"),
                (
                    session.license_id,
                    d.dump_time(active_since),
                    d.dump_time(session.created_at),
                ),
            ).fetchone()
            if active >= limit:
                return None
            db.execute(
                d.sql(f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (
                    session.id,
                    session.license_id,
                    session.token_digest,
                    session.ip,
                    session.user_agent,
                    d.dump_time(session.created_at),
                    d.dump_time(session.heartbeat_at),
                    d.dump_time(session.expires_at),
                    None,
                ),
            )
            return int(active)

    def session_by_token(self, token_digest: str) -> SessionRecord | None:
        """The session whose token has this digest (ended or not), or None."""
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql(f"SELECT {_COLUMNS} FROM sessions WHERE token_digest = ?"),
                (token_digest,),
            ).fetchone()
        return self._session(row) if row else None

    def active_sessions(self, license_id: str, active_since: datetime, now: datetime) -> int:
        """How many sessions of the license are active (see :meth:`open_session`)."""
        d = self.dialect
        with self._tx(write=False) as db:
            (n,) = db.execute(
                d.sql(f"SELECT COUNT(*) FROM sessions WHERE {_ACTIVE}"),
                (license_id, d.dump_time(active_since), d.dump_time(now)),
            ).fetchone()
        return int(n)

    def touch_session(self, session_id: str, at: datetime) -> bool:
        """Record a heartbeat of a session that has not ended; False if it has."""
        d = self.dialect
        with self._tx() as db:
            n = db.execute(
                d.sql("UPDATE sessions SET heartbeat_at = ? WHERE id = ? AND ended_at IS NULL"),
                (d.dump_time(at), session_id),
            ).rowcount
        return bool(n)

    def end_session(self, session_id: str, at: datetime) -> bool:
        """End a session (logout); False if it had ended already."""
        d = self.dialect
        with self._tx() as db:
            n = db.execute(
                d.sql("UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL"),
                (d.dump_time(at), session_id),
            ).rowcount
        return bool(n)

    def add_security_event(self, event: SecurityEvent) -> None:
        """Record a flag (kinds: ``multi_ip``, ``concurrent_sessions``)."""
        d = self.dialect
        with self._tx() as db:
            db.execute(
                d.sql(
                    "INSERT INTO security_events (ts, license_id, kind, data)"
                    f" VALUES (?, ?, ?, {d.json_param})"
                ),
                (d.dump_time(event.ts), event.license_id, event.kind, json.dumps(event.data)),
            )

    def security_events(self, license_id: str, limit: int = 100) -> list[SecurityEvent]:
        """The license's flags, newest first."""
        d = self.dialect
        with self._tx(write=False) as db:
            rows = db.execute(
                d.sql(
                    "SELECT ts, license_id, kind, data FROM security_events"
                    " WHERE license_id = ? ORDER BY ts DESC, id DESC LIMIT ?"
                ),
                (license_id, limit),
            ).fetchall()
        out = []
        for ts, lid, kind, data in rows:
            when = d.load_time(ts)
            assert when is not None
            out.append(SecurityEvent(when, lid, kind, json.loads(data)))
        return out
