"""A license record and the states it moves through.

A license is ``active``; an operator may ``suspend`` it (with a reason) and
``reinstate`` it, or ``revoke`` it for good. The table below is the one place
for those moves; :func:`check_license` raises on any other.

Apart from its status, an active or suspended license may be *throttled* (the
anti-piracy tier 2, licensing/responses.py): its entitlements halved, the
originals kept in :attr:`License.throttle`. :func:`reinstated` is the one rule
for what ``reinstate`` does: restore throttled limits, and make a suspended
license active.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from connectsw.core.errors import InvalidState
from connectsw.licensing.tiers import Entitlements, Tier


class LicenseStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


LICENSE_TRANSITIONS: dict[LicenseStatus, frozenset[LicenseStatus]] = {
    LicenseStatus.ACTIVE: frozenset({LicenseStatus.SUSPENDED, LicenseStatus.REVOKED}),
    LicenseStatus.SUSPENDED: frozenset({LicenseStatus.ACTIVE, LicenseStatus.REVOKED}),
    LicenseStatus.REVOKED: frozenset(),
}


def check_license(current: LicenseStatus, new: LicenseStatus) -> None:
    """Raise :class:`InvalidState` unless ``current`` may become ``new``."""
    if new not in LICENSE_TRANSITIONS[current]:
        raise InvalidState(f"a {current.value} license cannot become {new.value}")


class Throttle(BaseModel):
    """A license's limits were reduced (anti-piracy tier 2): what they were, since when, why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    original: Entitlements
    since: datetime
    reason: str = Field(max_length=500)


def halved(entitlements: Entitlements) -> Entitlements:
    """``requests_per_hour`` and ``max_projects`` (if limited) halved, at least 1."""
    update: dict[str, int] = {"requests_per_hour": max(1, entitlements.requests_per_hour // 2)}
    if entitlements.max_projects is not None:
        update["max_projects"] = max(1, entitlements.max_projects // 2)
    return entitlements.model_copy(update=update)


class License(BaseModel):
    """A license as stored: never its key (the store holds only the key's digest).

    Times are timezone-aware UTC; ``expires_at`` None means no expiry.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="public id: CSFW-TIER-RANDOM (the key without its tag)")
    tier: Tier
    email: str
    entitlements: Entitlements
    issued_at: datetime
    expires_at: datetime | None = None
    status: LicenseStatus = LicenseStatus.ACTIVE
    reason: str | None = Field(None, description="why it was suspended or revoked")
    updated_at: datetime
    throttle: Throttle | None = Field(
        None, description="set while the limits are reduced: the original entitlements"
    )


def throttled(record: License, reason: str, now: datetime) -> License:
    """``record`` with its limits halved and the originals kept (InvalidState if it is
    throttled already, or revoked)."""
    if record.status is LicenseStatus.REVOKED:
        raise InvalidState(f"license {record.id} is revoked")
    if record.throttle is not None:
        raise InvalidState(f"license {record.id} is throttled already")
    return record.model_copy(
        update={
            "entitlements": halved(record.entitlements),
            "throttle": Throttle(original=record.entitlements, since=now, reason=reason),
            "updated_at": now,
        }
    )


def reinstated(record: License, now: datetime) -> License:
    """What ``reinstate`` makes of ``record``: throttled limits restored, and a suspended
    license active (its reason cleared).

    Raises InvalidState for a revoked license (the state table), or an active one
    that is not throttled (nothing to reinstate).
    """
    if record.status is not LicenseStatus.ACTIVE:
        check_license(record.status, LicenseStatus.ACTIVE)
    elif record.throttle is None:
        raise InvalidState(f"license {record.id} is active and not throttled: nothing to reinstate")
    update: dict[str, object] = {
        "status": LicenseStatus.ACTIVE,
        "reason": None,
        "throttle": None,
        "updated_at": now,
    }
    if record.throttle is not None:
        update["entitlements"] = record.throttle.original
    return record.model_copy(update=update)
