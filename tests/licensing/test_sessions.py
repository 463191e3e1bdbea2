"""Sessions on both stores: tokens, heartbeats, TTL, the tier's allowance and its 50 % grace."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store, open_store
from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.models import License
from connectsw.licensing.service import Licenses
from connectsw.licensing.sessions import Sessions, hard_limit
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier

pytestmark = pytest.mark.both_stores

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings.store_url)


def license_of(store: Store, tier: Tier = Tier.PRO, users: int | None = None) -> License:
    record, _ = Licenses(store, b"z" * 32, DEFAULT_TIERS).issue(tier, "a@b.io", users=users)
    return record


def reason(call: object) -> str:
    with pytest.raises(LicenseRefused) as err:
        call()  # type: ignore[operator]
    return err.value.reason


def test_a_session_token_resolves_until_logout(store: Store) -> None:
    sessions = Sessions(store)
    opened = sessions.open(license_of(store), "10.0.0.1", "cli/1.0", NOW)
    assert opened.token.startswith("cst_") and not opened.flagged
    assert sessions.resolve(opened.token, NOW).id == opened.session.id
    sessions.heartbeat(opened.token, NOW + timedelta(seconds=200))
    sessions.end(opened.token, NOW + timedelta(seconds=201))
    assert reason(lambda: sessions.resolve(opened.token, NOW)) == "session_ended"
    assert reason(lambda: sessions.heartbeat(opened.token, NOW)) == "session_ended"
    # The store keeps a digest, not the token.
    assert store.session_by_token(opened.token) is None


def test_sessions_expire_without_heartbeat_and_at_their_ttl(store: Store) -> None:
    sessions = Sessions(store, ttl=3600, heartbeat_timeout=300)
    opened = sessions.open(license_of(store), "10.0.0.1", "", NOW)
    assert reason(lambda: sessions.resolve(opened.token, NOW + timedelta(seconds=301))) == (
        "session_expired"
    )
    kept = Sessions(store, ttl=3600, heartbeat_timeout=300).open(license_of(store), "ip", "", NOW)
    for minutes in range(4, 60, 4):  # heartbeats keep it alive, up to its TTL
        sessions.heartbeat(kept.token, NOW + timedelta(minutes=minutes))
    assert reason(lambda: sessions.resolve(kept.token, NOW + timedelta(minutes=61))) == (
        "session_expired"
    )


@pytest.mark.parametrize("token", ["", "cst_nope", "Bearer x", "cst_" + "a" * 200, "CSFW-PRO-X"])
def test_unknown_and_malformed_tokens_are_refused(store: Store, token: str) -> None:
    assert reason(lambda: Sessions(store).resolve(token, NOW)) == "invalid_session"


def test_the_allowance_then_the_grace_flagged_then_refused(store: Store) -> None:
    sessions = Sessions(store)
    pro = license_of(store, Tier.PRO)  # 2 sessions allowed, 3 with the grace
    allowed = DEFAULT_TIERS[Tier.PRO].concurrent_sessions
    assert (allowed, hard_limit(allowed)) == (2, 3)
    opened = [sessions.open(pro, f"10.0.0.{i}", "", NOW) for i in range(3)]
    assert [o.flagged for o in opened] == [False, False, True]
    assert reason(lambda: sessions.open(pro, "10.0.0.9", "", NOW)) == "too_many_sessions"
    sessions.end(opened[0].token, NOW)
    assert sessions.open(pro, "10.0.0.9", "", NOW).flagged  # 3 active again
    # Idle sessions lapse and stop counting.
    later = NOW + timedelta(seconds=301)
    assert not sessions.open(pro, "10.0.0.10", "", later).flagged
    # Another license is not affected.
    assert not sessions.open(license_of(store), "10.0.0.1", "", NOW).flagged


def test_a_single_seat_has_no_grace(store: Store) -> None:
    sessions = Sessions(store)
    free = license_of(store, Tier.FREE)
    sessions.open(free, "10.0.0.1", "", NOW)
    assert reason(lambda: sessions.open(free, "10.0.0.2", "", NOW)) == "too_many_sessions"


def test_fifty_logins_at_once_admit_exactly_the_limit(settings: Settings) -> None:
    first = open_store(settings.store_url)
    business = license_of(first, Tier.BUSINESS, users=10)  # 10 allowed, 15 with the grace
    barrier = threading.Barrier(50)
    admitted: list[bool] = []
    lock = threading.Lock()

    stores = [open_store(settings.store_url) for _ in range(50)]  # 50 "servers"

    def login(store: Store) -> None:
        sessions = Sessions(store)
        barrier.wait()
        try:
            sessions.open(business, "10.0.0.1", "", NOW)
            ok = True
        except LicenseRefused:
            ok = False
        with lock:
            admitted.append(ok)

    threads = [threading.Thread(target=login, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert admitted.count(True) == 15
    assert first.active_sessions(business.id, NOW - timedelta(seconds=300), NOW) == 15
