"""Sessions: a license key exchanged for a short-lived token (reference §3.2's session tracker).

A session is active while it has not ended, its last heartbeat is within
``heartbeat_timeout`` seconds (reference: 300) and its ``ttl`` (reference: 1 hour)
has not passed. A license may hold its tier's ``concurrent_sessions`` at once;
above that, up to 50 % more are admitted and flagged (the reference's grace),
and beyond the grace a new session is refused with ``too_many_sessions``.

A token is ``cst_`` and 43 base64url characters (256 random bits); the store
keeps its SHA-256 digest only.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectsw.core.stores import Store
from connectsw.core.stores.sessions import SessionRecord
from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.models import License

TOKEN_PREFIX = "cst_"
GRACE = 1.5
"""Reference §3.2: sessions above the allowance are refused past 150 % of it."""
MAX_FIELD = 256


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def hard_limit(allowed: int) -> int:
    """Sessions admitted at most: the allowance plus the 50 % grace (at least the allowance)."""
    return max(allowed, math.floor(allowed * GRACE))


@dataclass(frozen=True)
class Opened:
    """A new session, its token (shown once) and whether it is in the grace (flagged)."""

    session: SessionRecord
    token: str
    active: int
    allowed: int

    @property
    def flagged(self) -> bool:
        """True when this session is above the allowance (a security event)."""
        return self.active > self.allowed


class Sessions:
    """Sessions of licenses in one store. Times in seconds."""

    def __init__(self, store: Store, ttl: float = 3600.0, heartbeat_timeout: float = 300.0):
        self.store = store
        self.ttl = timedelta(seconds=ttl)
        self.heartbeat_timeout = timedelta(seconds=heartbeat_timeout)

    def open(
        self, license: License, ip: str, user_agent: str = "", now: datetime | None = None
    ) -> Opened:
        """Open a session for a license already validated.

        Raises:
            LicenseRefused: ``too_many_sessions`` past the allowance plus its grace.
        """
        now = now or datetime.now(UTC)
        allowed = license.entitlements.concurrent_sessions
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = SessionRecord(
            id="ses_" + secrets.token_hex(8),
            license_id=license.id,
            token_digest=token_digest(token),
            ip=ip[:MAX_FIELD],
            user_agent=user_agent[:MAX_FIELD],
            created_at=now,
            heartbeat_at=now,
            expires_at=now + self.ttl,
        )
        limit = hard_limit(allowed)
        before = self.store.open_session(record, now - self.heartbeat_timeout, limit)
        if before is None:
            raise LicenseRefused(
                "too_many_sessions",
                f"license {license.id} has {limit} active sessions, the most it may"
                f" ({allowed} for its tier, plus 50 % grace): log out elsewhere, or wait"
                f" {int(self.heartbeat_timeout.total_seconds())} s for an idle one to lapse",
            )
        return Opened(record, token, before + 1, allowed)

    def resolve(self, token: str, now: datetime | None = None) -> SessionRecord:
        """The active session of ``token``.

        Raises:
            LicenseRefused: ``invalid_session`` (unknown or malformed token),
                ``session_ended`` (logged out) or ``session_expired`` (past its TTL
                or without a heartbeat for longer than the timeout).
        """
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            raise LicenseRefused("invalid_session", "not a session token")
        record = self.store.session_by_token(token_digest(token))
        if record is None:
            raise LicenseRefused("invalid_session", "unknown session token")
        return self.check(record, now or datetime.now(UTC))

    def check(self, record: SessionRecord, now: datetime) -> SessionRecord:
        """``record`` if it is live at ``now``; raises LicenseRefused ``session_ended``
        or ``session_expired`` (TTL passed, or no heartbeat within the timeout)."""
        if record.ended_at is not None:
            raise LicenseRefused("session_ended", f"session {record.id} has ended (logged out)")
        if record.expires_at <= now or record.heartbeat_at <= now - self.heartbeat_timeout:
            raise LicenseRefused("session_expired", f"session {record.id} has expired")
        return record

    def heartbeat(
        self, token: str, now: datetime | None = None, record: SessionRecord | None = None
    ) -> SessionRecord:
        """Keep an active session alive (raises as :meth:`resolve`); ``record``: the
        token's session as :meth:`resolve` just gave it (not looked up again)."""
        now = now or datetime.now(UTC)
        record = record or self.resolve(token, now)
        if not self.store.touch_session(record.id, now):
            raise LicenseRefused("session_ended", f"session {record.id} has ended (logged out)")
        return record

    def end(
        self, token: str, now: datetime | None = None, record: SessionRecord | None = None
    ) -> SessionRecord:
        """Log out (raises as :meth:`resolve` for an unknown or ended session); ``record``
        as for :meth:`heartbeat`."""
        now = now or datetime.now(UTC)
        record = record or self.resolve(token, now)
        self.store.end_session(record.id, now)
        return record
