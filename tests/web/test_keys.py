"""The hot path for a key: the store is read at most once per key per cache window."""

from __future__ import annotations

import asyncio

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import open_store
from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.keys import new_key
from connectsw.licensing.models import LicenseStatus
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier
from connectsw.web.keys import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_store_read_per_key_per_window_and_changes_seen_after_it(settings: Settings) -> None:
    licenses = Licenses(open_store(settings.store_url), b"w" * 32, DEFAULT_TIERS)
    record, key = licenses.issue(Tier.PRO, "a@b.io")
    clock = Clock()
    cache = KeyCache(licenses, window=5.0, clock=clock)

    async def scenario() -> None:
        for _ in range(100):
            assert (await cache.validate(key)).id == record.id
        assert cache.lookups == 1
        licenses.change(record.id, LicenseStatus.SUSPENDED, "shared")
        assert (await cache.validate(key)).id == record.id  # within the window
        clock.now += 5.0
        with pytest.raises(LicenseRefused) as err:
            await cache.validate(key)
        assert err.value.reason == "suspended" and cache.lookups == 2
        # A forged key never reaches the store; an unknown one is read and cached too.
        with pytest.raises(LicenseRefused):
            await cache.validate(new_key(Tier.PRO, b"v" * 32).key)
        assert cache.lookups == 2
        unknown = new_key(Tier.PRO, b"w" * 32).key
        for _ in range(3):
            with pytest.raises(LicenseRefused) as err:
                await cache.validate(unknown)
            assert err.value.reason == "not_found"
        assert cache.lookups == 3

    asyncio.run(scenario())
