"""License tiers and what each one entitles to (reference §3.1, §3.2).

The values live in one table in the settings (``[licensing.tiers.NAME]`` in
conf/default.toml); this module only gives them types and bounds.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Tier(StrEnum):
    """The four tiers of reference §3.1, in the order of what they allow."""

    FREE = "FREE"
    PRO = "PRO"
    BUSINESS = "BUSINESS"
    ENTERPRISE = "ENTERPRISE"


class Entitlements(BaseModel):
    """What a license of one tier may do.

    ``max_projects`` None means no limit; ``days`` is how long a newly issued
    license is valid (None: no expiry). ``ip_threshold`` is the number of distinct
    client IPs in 24 hours per seat above which the multi-IP check flags the
    license (reference §3.2: FREE 2, PRO 3, BUSINESS 10, ENTERPRISE 50). A tier's
    concurrent sessions get the reference's 50 % grace before they are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_projects: int | None = Field(None, ge=1)
    max_users: int = Field(1, ge=1, le=100_000)
    requests_per_hour: int = Field(1000, ge=1)
    concurrent_sessions: int = Field(1, ge=1)
    ip_threshold: int = Field(2, ge=1)
    features: tuple[str, ...] = ()
    days: int | None = Field(None, ge=1, le=36_500)


#: The shipped table (conf/default.toml documents the same values; a test keeps
#: them equal). Change a value in ``[licensing.tiers.NAME]`` of connectsw.toml.
DEFAULT_TIERS: dict[Tier, Entitlements] = {
    Tier.FREE: Entitlements(
        max_projects=1,
        max_users=1,
        requests_per_hour=100,
        concurrent_sessions=1,
        ip_threshold=2,
        features=("local",),
        days=365,
    ),
    Tier.PRO: Entitlements(
        max_projects=10,
        max_users=1,
        requests_per_hour=1000,
        concurrent_sessions=2,
        ip_threshold=3,
        features=("local", "server", "api"),
        days=365,
    ),
    Tier.BUSINESS: Entitlements(
        max_users=10,
        requests_per_hour=10_000,
        concurrent_sessions=10,
        ip_threshold=10,
        features=("local", "server", "api", "teams"),
        days=365,
    ),
    Tier.ENTERPRISE: Entitlements(
        max_users=100,
        requests_per_hour=100_000,
        concurrent_sessions=100,
        ip_threshold=50,
        features=("local", "server", "api", "teams", "sso", "audit-export"),
        days=365,
    ),
}
