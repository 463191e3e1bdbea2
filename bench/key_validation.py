"""Key validations per second on the server's cached path, next to a bare HMAC check.

The cached path is ``web/keys.py`` ``KeyCache.validate`` with a warm cache (the
license of the key read once, then reused within ``licensing.key_cache_seconds``):
what every authenticated request pays. The baseline, in the same run, is the bare
HMAC verification of the same key (``licensing/keys.py`` ``parse_key``: format and
tag, no store). Goal: at least 20,000 cached validations per second (issue 6).
Each figure is the median of ``--repeat`` timed rounds of ``--n`` calls, alternating
which runs first (the machine is shared). Usage::

    .venv/bin/python bench/key_validation.py [--n 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from connectsw.core.stores import open_store
from connectsw.licensing.keys import parse_key
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier
from connectsw.web.keys import KeyCache

GOAL = 20_000
SECRET = bytes(range(32))


async def cached_rate(cache: KeyCache, key: str, n: int) -> float:
    """Validations per second through the warm cache (one coroutine, awaited in turn)."""
    validate = cache.validate
    start = time.perf_counter()
    for _ in range(n):
        await validate(key)
    return n / (time.perf_counter() - start)


def hmac_rate(key: str, n: int) -> float:
    """Bare tag verifications per second of the same key."""
    start = time.perf_counter()
    for _ in range(n):
        parse_key(key, SECRET)
    return n / (time.perf_counter() - start)


async def main_async(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        licenses = Licenses(store, SECRET, DEFAULT_TIERS)
        _, key = licenses.issue(Tier.PRO, "bench@example.com")
        cache = KeyCache(licenses, window=3600.0)  # the whole run within one window
        await cache.validate(key)  # warm: the one store read
        cached, bare = [], []
        for i in range(repeat):
            if i % 2:
                bare.append(hmac_rate(key, n))
                cached.append(await cached_rate(cache, key, n))
            else:
                cached.append(await cached_rate(cache, key, n))
                bare.append(hmac_rate(key, n))
        assert cache.lookups == 1, "the cache was not warm"
        store.close()
    c, b = statistics.median(cached), statistics.median(bare)
    print(f"{'bare HMAC check (parse_key)':34} {b:12,.0f} /s")
    print(f"{'cached validation (KeyCache)':34} {c:12,.0f} /s  {c / b:5.2f}x of bare")
    print(f"goal >= {GOAL:,}/s: {'met' if c >= GOAL else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="validations per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median)")
    args = parser.parse_args()
    asyncio.run(main_async(args.n, args.repeat))


if __name__ == "__main__":
    main()
