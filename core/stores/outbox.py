"""The outbox: e-mails queued by the anti-piracy response tiers (the SQL, for every backend).

A mixin of :class:`~connectsw.core.stores.sql.SQLStore`. A message is written once
per ``dedupe_key`` (UNIQUE; ``INSERT ... ON CONFLICT DO NOTHING``), so an action
applied twice, or by two processes at once, queues one e-mail.
:meth:`OutboxRecords.apply_response` writes a response's message, the license's
new record and its security events in one transaction that holds the license's
row lock, or writes nothing. ``connectsw outbox send`` marks a message sent only
after the SMTP server accepted it. Messages name a license by its public id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectsw.core.errors import NotFound
from connectsw.core.stores.rows import dump

if TYPE_CHECKING:
    from connectsw.core.stores.dialects import Dialect
    from connectsw.core.stores.sessions import SecurityEvent
    from connectsw.licensing.models import License

#: The longest ``last_error`` kept (one line).
MAX_ERROR = 500


@dataclass(frozen=True)
class OutboxMessage:
    """One e-mail to send; ``id`` is the store's (0 before it is queued)."""

    license_id: str
    to_addr: str
    subject: str
    body: str
    dedupe_key: str
    created_at: datetime
    id: int = 0
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Response:
    """What one response action writes together: its e-mail, the license's new record
    (None: unchanged) and security events (each gets the message's id in its data)."""

    message: OutboxMessage
    license: License | None = None
    events: tuple[SecurityEvent, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Applied:
    """What :meth:`OutboxRecords.apply_response` did.

    ``response`` None with a ``message_id``: the dedupe key was taken already (the
    existing message's id); both None: ``decide`` chose to do nothing.
    """

    message_id: int | None
    response: Response | None


_COLUMNS = (
    "id, created_at, license_id, to_addr, subject, body, dedupe_key, sent_at, attempts, last_error"
)


class OutboxRecords:
    """Queue, list, mark sent or failed; apply a response atomically."""

    dialect: Dialect

    if TYPE_CHECKING:  # provided by SQLStore

        def _tx(self, write: bool = True, opening: bool = False) -> AbstractContextManager[Any]: ...

    def _message(self, row: Any) -> OutboxMessage:
        t = self.dialect.load_time
        created = t(row[1])
        assert created is not None
        return OutboxMessage(
            id=int(row[0]),
            created_at=created,
            license_id=row[2],
            to_addr=row[3],
            subject=row[4],
            body=row[5],
            dedupe_key=row[6],
            sent_at=t(row[7]),
            attempts=int(row[8]),
            last_error=row[9],
        )

    def _insert_message(self, db: Any, m: OutboxMessage) -> int | None:
        d = self.dialect
        row = db.execute(
            d.sql(
                "INSERT INTO outbox (created_at, license_id, to_addr, subject, body, dedupe_key)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
            ),
            (d.dump_time(m.created_at), m.license_id, m.to_addr, m.subject, m.body, m.dedupe_key),
        ).fetchone()
        return int(row[0]) if row else None

    def _message_id(self, db: Any, dedupe_key: str) -> int | None:
        row = db.execute(
            self.dialect.sql("SELECT id FROM outbox WHERE dedupe_key = ?"), (dedupe_key,)
        ).fetchone()
        return int(row[0]) if row else None

    def queue_message(self, message: OutboxMessage) -> int | None:
        """Queue ``message`` unless its ``dedupe_key`` is taken; its id, or None."""
        with self._tx() as db:
            return self._insert_message(db, message)

    def apply_response(
        self,
        license_id: str,
        dedupe_key: str,
        decide: Callable[[License], Response | None],
    ) -> Applied:
        """In one transaction holding the license's row lock: if ``dedupe_key`` is
        queued already, nothing; else ``decide(current license)`` and write its
        response (message, license record, events), or nothing if it returns None.

        An exception from ``decide`` writes nothing. The UNIQUE dedupe key, not the
        read before it, is what makes a second apply a no-op (two writers at once:
        one inserts, the other's insert does nothing and its transaction is rolled back).
        NotFound if there is no such license.
        """
        from connectsw.licensing.models import License

        d = self.dialect
        with self._tx() as db:
            row = db.execute(
                d.sql(f"SELECT data FROM licenses WHERE id = ?{d.update_lock}"), (license_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no license {license_id!r}")
            existing = self._message_id(db, dedupe_key)
            if existing is not None:
                return Applied(existing, None)
            response = decide(License.model_validate_json(row[0]))
            if response is None:
                return Applied(None, None)
            if response.message.dedupe_key != dedupe_key:
                raise ValueError("the response's message has another dedupe key")
            message_id = self._insert_message(db, response.message)
            if message_id is None:  # taken meanwhile: undo nothing, write nothing
                return Applied(self._message_id(db, dedupe_key), None)
            if response.license is not None:
                new = response.license
                db.execute(
                    d.sql(
                        "UPDATE licenses SET status = ?, updated_at = ?, data = ?json WHERE id = ?"
                    ),
                    (
                        new.status.value,
                        d.dump_time(new.updated_at),
                        dump(new, f"license {new.id}"),
                        license_id,
                    ),
                )
            for event in response.events:
                db.execute(
                    d.sql(
                        "INSERT INTO security_events (ts, license_id, kind, data)"
                        " VALUES (?, ?, ?, ?json)"
                    ),
                    (
                        d.dump_time(event.ts),
                        event.license_id,
                        event.kind,
                        json.dumps({**event.data, "message_id": message_id}),
                    ),
                )
            return Applied(
                message_id, replace(response, message=replace(response.message, id=message_id))
            )

    def outbox_messages(self, *, unsent: bool = False, limit: int = 100) -> list[OutboxMessage]:
        """Messages, oldest first; with ``unsent``, only those not sent yet."""
        where = " WHERE sent_at IS NULL" if unsent else ""
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql(f"SELECT {_COLUMNS} FROM outbox{where} ORDER BY id LIMIT ?"),
                (limit,),
            ).fetchall()
        return [self._message(r) for r in rows]

    def outbox_message(self, message_id: int) -> OutboxMessage | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?"), (message_id,)
            ).fetchone()
        return self._message(row) if row else None

    def mark_sent(self, message_id: int, at: datetime) -> bool:
        """Record a delivery (one more attempt, no error); False if it was sent already."""
        d = self.dialect
        with self._tx() as db:
            n = db.execute(
                d.sql(
                    "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL"
                    " WHERE id = ? AND sent_at IS NULL"
                ),
                (d.dump_time(at), message_id),
            ).rowcount
        return bool(n)

    def mark_failed(self, message_id: int, error: str) -> None:
        """Record a failed attempt: one more attempt, ``error`` (one line, shortened)."""
        text = " ".join(error.split())[:MAX_ERROR]
        with self._tx() as db:
            db.execute(
                self.dialect.sql(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                    " WHERE id = ? AND sent_at IS NULL"
                ),
                (text, message_id),
            )
