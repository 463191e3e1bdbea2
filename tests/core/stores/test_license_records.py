"""License records on both stores: created once, found by key digest, conditional status changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from connectsw.core.errors import Conflict, NotFound
from connectsw.core.stores import Store
from connectsw.licensing.keys import key_digest, new_key, parse_key
from connectsw.licensing.models import License, LicenseStatus
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier

Opener = Callable[[], Store]
SECRET = b"k" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def issue(store: Store, tier: Tier = Tier.PRO, at: datetime = T0) -> tuple[License, str]:
    key = new_key(tier, SECRET)
    record = License(
        id=key.public_id,
        tier=tier,
        email="a@example.com",
        entitlements=DEFAULT_TIERS[tier],
        issued_at=at,
        expires_at=at + timedelta(days=365),
        updated_at=at,
    )
    store.create_license(record, key_digest(key))
    return record, key.key


def test_a_license_is_found_by_id_and_by_its_key_digest_only(store: Store) -> None:
    record, key = issue(store)
    assert store.get_license(record.id) == record
    digest = key_digest(new_key(Tier.PRO, SECRET))  # another key: not found
    assert store.license_by_digest(digest) is None
    assert store.license_by_digest(key_digest(parse_key(key, SECRET))) == record
    assert store.get_license("CSFW-PRO-NOPE") is None


def test_the_store_never_holds_the_key(store: Store) -> None:
    record, key = issue(store)
    tag = key.rsplit("-", 1)[1]
    dumped = repr([record.model_dump_json(), store.list_licenses()])
    assert tag not in dumped


def test_creating_the_same_license_twice_is_a_conflict(store: Store) -> None:
    record, key = issue(store)
    with pytest.raises(Conflict):
        store.create_license(record, "another-digest")


def test_list_most_recently_changed_first(store: Store) -> None:
    old, _ = issue(store, at=T0)
    new, _ = issue(store, Tier.FREE, at=T0 + timedelta(hours=1))
    assert [lic.id for lic in store.list_licenses()] == [new.id, old.id]
    assert len(store.list_licenses(limit=1)) == 1


def test_a_status_change_is_conditional(store: Store) -> None:
    record, _ = issue(store)
    suspended = record.model_copy(
        update={"status": LicenseStatus.SUSPENDED, "reason": "shared key", "updated_at": T0}
    )
    store.update_license(suspended, {LicenseStatus.ACTIVE})
    assert store.get_license(record.id) == suspended
    with pytest.raises(Conflict, match="is suspended now"):
        store.update_license(suspended, {LicenseStatus.ACTIVE})
    with pytest.raises(NotFound):
        store.update_license(
            suspended.model_copy(update={"id": "CSFW-PRO-X"}), {LicenseStatus.ACTIVE}
        )


def test_two_operators_at_once_exactly_one_wins(open_new: Opener) -> None:
    first = open_new()
    record, _ = issue(first)
    stores = [open_new() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def change(store: Store, status: LicenseStatus) -> None:
        barrier.wait()
        try:
            store.update_license(
                record.model_copy(update={"status": status}), {LicenseStatus.ACTIVE}
            )
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    statuses = [LicenseStatus.SUSPENDED, LicenseStatus.REVOKED] * 2
    threads = [threading.Thread(target=change, args=a) for a in zip(stores, statuses, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["won"]
