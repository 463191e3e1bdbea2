"""The multi-IP check: distinct IPs per license in 24 h against the tier's threshold."""

from __future__ import annotations

from datetime import UTC, datetime

from connectsw.licensing.ipwatch import RecentIPs
from connectsw.licensing.models import License
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier


def lic(tier: Tier, users: int = 1) -> License:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return License(
        id=f"CSFW-{tier.value}-AAAAAAAAAAAAAAA{users}",
        tier=tier,
        email="a@b.io",
        entitlements=DEFAULT_TIERS[tier].model_copy(update={"max_users": users}),
        issued_at=now,
        updated_at=now,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_pro_is_flagged_at_its_fourth_address_once_per_new_address() -> None:
    watch = RecentIPs(clock=Clock())
    pro = lic(Tier.PRO)  # reference §3.2: 3 per seat
    assert [watch.observe(pro, f"10.0.0.{i}") for i in range(3)] == [None] * 3
    assert watch.observe(pro, "10.0.0.1") is None  # a known address
    assert watch.observe(pro, "10.0.0.9") == (4, 3)
    assert watch.observe(pro, "10.0.0.9") is None
    assert watch.observe(pro, "10.0.0.10") == (5, 3)


def test_the_threshold_grows_with_seats_and_addresses_age_out() -> None:
    clock = Clock()
    watch = RecentIPs(clock=clock)
    team = lic(Tier.BUSINESS, users=2)  # 10 per seat: 20
    assert all(watch.observe(team, f"10.0.1.{i}") is None for i in range(20))
    assert watch.observe(team, "10.0.2.1") == (21, 20)
    clock.now += 86_401  # a day later the old addresses no longer count
    assert watch.observe(team, "10.0.3.1") is None


def test_licenses_are_counted_apart() -> None:
    watch = RecentIPs(clock=Clock())
    a, b = lic(Tier.FREE, 1), lic(Tier.FREE, 2)
    watch.observe(a, "1.1.1.1")
    watch.observe(a, "1.1.1.2")
    assert watch.observe(b, "1.1.1.3") is None
    assert watch.observe(a, "1.1.1.4") == (3, 2)
