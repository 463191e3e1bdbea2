"""What an operator (and later the server) does with licenses: issue, change, check, certify.

The first four steps of reference §3.1's validation pipeline are
:meth:`Licenses.validate`: format (the key's HMAC tag, no store access) →
lookup (by the key's digest) → expiry → suspension / revocation. Rate limits,
the multi-IP check and session activity follow on the server.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectsw.core.errors import NotFound
from connectsw.core.models import utcnow
from connectsw.core.stores import Store
from connectsw.licensing.certificates import Certificate, sign_certificate
from connectsw.licensing.errors import InvalidLicenseRequest, LicenseRefused
from connectsw.licensing.keys import LicenseKey, key_digest, new_key, parse_key, public_part
from connectsw.licensing.models import License, LicenseStatus, check_license, reinstated
from connectsw.licensing.tiers import Entitlements, Tier

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{1,63}")
MAX_USERS = 100_000
MAX_DAYS = 36_500
MAX_REASON = 500


class Licenses:
    """Licenses in one store, keys tagged with ``secret``, entitlements from ``tiers``."""

    def __init__(self, store: Store, secret: bytes, tiers: dict[Tier, Entitlements]) -> None:
        self.store = store
        self.secret = secret
        self.tiers = tiers

    def issue(
        self,
        tier: Tier,
        email: str,
        *,
        users: int | None = None,
        days: int | None = None,
        now: datetime | None = None,
    ) -> tuple[License, str]:
        """A new active license and its key (the only time the key exists in clear).

        ``users`` overrides the tier's seats (sessions grow with them); ``days``
        its validity. Raises :class:`InvalidLicenseRequest` for a malformed e-mail
        address, ``users`` outside 1..100000 or ``days`` outside 1..36500.
        """
        if not _EMAIL.fullmatch(email):
            raise InvalidLicenseRequest("--email: not an e-mail address")
        if users is not None and not 1 <= users <= MAX_USERS:
            raise InvalidLicenseRequest(f"--users: from 1 to {MAX_USERS}")
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise InvalidLicenseRequest(f"--days: from 1 to {MAX_DAYS}")
        base = self.tiers[tier]
        entitlements = base
        if users is not None:
            entitlements = base.model_copy(
                update={
                    "max_users": users,
                    "concurrent_sessions": max(base.concurrent_sessions, users),
                }
            )
        now = now or utcnow()
        valid_days = days if days is not None else entitlements.days
        key = new_key(tier, self.secret)
        record = License(
            id=key.public_id,
            tier=tier,
            email=email,
            entitlements=entitlements,
            issued_at=now,
            expires_at=now + timedelta(days=valid_days) if valid_days else None,
            updated_at=now,
        )
        self.store.create_license(record, key_digest(key))
        return record, key.key

    def get(self, license_id: str) -> License:
        """The license; :class:`NotFound` if there is none with this public id.

        A whole key given instead of its id is read as its id (its secret tag is never
        shown: :func:`~connectsw.licensing.keys.public_part`)."""
        public = public_part(license_id) or license_id.strip().upper()
        record = self.store.get_license(public)
        if record is None:
            shown = public if public_part(license_id) else license_id
            raise NotFound(f"no license {shown!r}")
        return record

    def list(self, limit: int = 100) -> list[License]:
        return self.store.list_licenses(limit)

    def active_by_tier(self, now: datetime | None = None, limit: int = 100_000) -> dict[str, int]:
        """Active, unexpired licenses per tier name (every tier present, 0 included)."""
        now = now or utcnow()
        counts = {tier.value: 0 for tier in Tier}
        for record in self.store.list_licenses(limit):
            live = record.expires_at is None or record.expires_at > now
            if record.status is LicenseStatus.ACTIVE and live:
                counts[record.tier.value] += 1
        return counts

    def change(self, license_id: str, status: LicenseStatus, reason: str | None = None) -> License:
        """Suspend, reinstate or revoke (the license state table decides what may happen).

        Becoming ``active`` is :meth:`reinstate` (which also restores throttled limits).
        Raises NotFound, InvalidState (e.g. reinstating a revoked license) or
        Conflict (another operator changed it meanwhile).
        """
        if status is LicenseStatus.ACTIVE:
            return self.reinstate(license_id)
        current = self.get(license_id)
        new = self.changed(current, status, reason)
        self.store.update_license(new, {current.status})
        return new

    @staticmethod
    def changed(current: License, status: LicenseStatus, reason: str | None) -> License:
        """``current`` suspended or revoked with ``reason`` (the state table's check);
        nothing is written. Used by :meth:`change` and the anti-piracy tier 3."""
        if reason is not None and len(reason) > MAX_REASON:
            raise InvalidLicenseRequest(f"--reason: at most {MAX_REASON} characters")
        check_license(current.status, status)
        return current.model_copy(
            update={
                "status": status,
                "reason": reason if status is not LicenseStatus.ACTIVE else None,
                "updated_at": utcnow(),
            }
        )

    def reinstate(self, license_id: str) -> License:
        """Undo the anti-piracy responses an admin overrides: restore throttled limits and
        make a suspended license active (:func:`~connectsw.licensing.models.reinstated`).

        Raises NotFound; InvalidState for a revoked license or an active one that is
        not throttled; Conflict if its status changed meanwhile.
        """
        current = self.get(license_id)
        new = reinstated(current, utcnow())
        self.store.update_license(new, {current.status})
        return new

    def validate(self, key_text: str, now: datetime | None = None) -> License:
        """Reference §3.1 steps 1-4 for a presented key; returns its license.

        Raises:
            LicenseRefused: ``invalid_format`` (before any store access),
                ``not_found``, ``expired``, ``suspended`` or ``revoked``.
        """
        key = parse_key(key_text, self.secret)
        return check_license_record(self.lookup(key), key.public_id, now)

    def lookup(self, key: LicenseKey) -> License | None:
        """Step 2: the license of a key whose tag was checked (one indexed read)."""
        return self.store.license_by_digest(key_digest(key))

    def certificate(self, license_id: str, key: Ed25519PrivateKey) -> str:
        """A signed certificate of an active license (what it entitles to, until when).

        Raises NotFound, or LicenseRefused (``suspended``/``revoked``).
        """
        record = self.get(license_id)
        if record.status is not LicenseStatus.ACTIVE:
            raise LicenseRefused(
                record.status.value, f"license {record.id} is {record.status.value}"
            )
        cert = Certificate(
            license_id=record.id,
            tier=record.tier,
            entitlements=record.entitlements,
            issued_at=utcnow(),
            expires_at=record.expires_at,
        )
        return sign_certificate(cert, key)


def check_license_record(
    record: License | None, public_id: str, now: datetime | None = None
) -> License:
    """Steps 2-4 on a looked-up license: known, not expired, not suspended or revoked.

    Raises:
        LicenseRefused: ``not_found``, ``expired``, ``suspended`` or ``revoked``.
    """
    if record is None:
        raise LicenseRefused("not_found", f"license {public_id} is not known here")
    now = now or utcnow()
    if record.expires_at is not None and record.expires_at <= now:
        raise LicenseRefused(
            "expired", f"license {record.id} expired on {record.expires_at:%Y-%m-%d} UTC"
        )
    if record.status is LicenseStatus.SUSPENDED:
        why = f": {record.reason}" if record.reason else ""
        raise LicenseRefused("suspended", f"license {record.id} is suspended{why}")
    if record.status is LicenseStatus.REVOKED:
        raise LicenseRefused("revoked", f"license {record.id} has been revoked")
    return record
