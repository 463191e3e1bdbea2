"""The audit log in the relational store (reference "Audit Logging"; the SQL, for every backend).

A mixin of :class:`~connectsw.core.stores.sql.SQLStore`. One row per API request,
keyed by the request's usage event id, so writing a batch again (the server's
usage log replayed after a crash) adds only the rows not stored yet. Rows name a
license by its public id; no key or token is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectsw.core.stores.dialects import Dialect


@dataclass(frozen=True)
class AuditRecord:
    """One API request: who (license, user, session, ip, user agent), what (method and
    route template), how it ended (status, stable error code) and how long it took."""

    event_id: str
    ts: datetime
    license_id: str | None
    user_id: str | None
    session_id: str | None
    method: str
    endpoint: str
    ip: str
    user_agent: str
    status: int
    latency_ms: float
    error_code: str | None


_NAMES = [f.name for f in fields(AuditRecord)]
_COLUMNS = ", ".join(_NAMES)
_TS = _NAMES.index("ts")


class AuditRecords:
    """Write audit records in batches; read them back."""

    dialect: Dialect

    if TYPE_CHECKING:  # provided by SQLStore

        def _tx(self, write: bool = True, opening: bool = False) -> AbstractContextManager[Any]: ...

    def add_audit_records(self, records: Sequence[AuditRecord]) -> int:
        """Insert the records not stored yet (by ``event_id``), in one transaction;
        returns how many were new."""
        if not records:
            return 0
        d = self.dialect
        params = ", ".join("?" for _ in _NAMES)
        sql = d.sql(
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES ({params})"
            " ON CONFLICT (event_id) DO NOTHING"
        )
        rows = []
        for r in records:
            row = [getattr(r, name) for name in _NAMES]  # (astuple deep-copies: slow)
            row[_TS] = d.dump_time(r.ts)
            rows.append(row)
        with self._tx() as db:
            return d.executemany(db, sql, rows)

    def audit_records(self, license_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Records of one license (or of every request), newest first."""
        d = self.dialect
        where = " WHERE license_id = ?" if license_id is not None else ""
        args: tuple[Any, ...] = (license_id, limit) if license_id is not None else (limit,)
        with self._tx(write=False) as db:
            rows = db.execute(
                d.sql(
                    f"SELECT {_COLUMNS} FROM audit_log{where}"
                    " ORDER BY ts DESC, event_id DESC LIMIT ?"
                ),
                args,
            ).fetchall()
        out = []
        for row in rows:
            values = list(row)
            values[_TS] = d.load_time(values[_TS])
            out.append(AuditRecord(*values))
        return out
