"""A license record and the states it moves through.

A license is ``active``; an operator may ``suspend`` it (with a reason) and
``reinstate`` it, or ``revoke`` it for good. The table below is the one place
for those moves; :func:`check_license` raises on any other.
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
