"""Rate limits on a real server: per IP and per license, exact when 50 clients race."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.stores import open_store
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

from .serving import start_server

pytestmark = pytest.mark.slow

PER_IP = 20
FREE_PER_HOUR = 5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    server = start_server(
        tmp_path / "data",
        fast_dask=False,
        CONNECTSW_SERVER__IP_RATE_LIMIT=f"{PER_IP}/minute",
        CONNECTSW_LICENSING__TIERS__FREE__REQUESTS_PER_HOUR=str(FREE_PER_HOUR),
    )
    try:
        yield server.url, server.data
    finally:
        assert server.stop(10) == 0


async def race(url: str, n: int, headers: dict[str, str]) -> list[aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as session:
        start = asyncio.Event()

        async def one() -> aiohttp.ClientResponse:
            await start.wait()
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)


def test_fifty_clients_racing_get_exactly_the_per_ip_limit(server: tuple[str, Path]) -> None:
    url, _ = server
    responses = asyncio.run(race(f"{url}/v1/nothing", 50, {}))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(404) == PER_IP and statuses.count(429) == 50 - PER_IP
    limited = [r for r in responses if r.status == 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert all(r.headers["RateLimit-Limit"] == str(PER_IP) for r in responses)
    assert {r.headers["RateLimit-Remaining"] for r in limited} == {"0"}
    # /healthz is not an API path: never limited.
    healthz = asyncio.run(race(f"{url}/healthz", 5, {}))
    assert {r.status for r in healthz} == {200}


def test_a_license_gets_its_tiers_requests_per_hour(
    server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, data = server
    monkeypatch.setenv("CONNECTSW_DATA_DIR", str(data))
    # Entitlements are the tier's at issue time: issue under the server's table.
    monkeypatch.setenv("CONNECTSW_LICENSING__TIERS__FREE__REQUESTS_PER_HOUR", str(FREE_PER_HOUR))
    # FREE is local-only by default; here its small numbers are what is tested.
    monkeypatch.setenv("CONNECTSW_LICENSING__TIERS__FREE__FEATURES", '["local", "server"]')
    settings = load_settings(data_dir=data)
    tiers = settings.licensing.tiers
    licenses = Licenses(open_store(settings.store_url), license_secret(settings), tiers)
    _, key = licenses.issue(Tier.FREE, "a@b.io")

    async def calls() -> list[tuple[int, str]]:
        out = []
        async with aiohttp.ClientSession() as session:
            for _ in range(FREE_PER_HOUR + 1):
                async with session.post(
                    f"{url}/v1/sessions", headers={"X-License-Key": key}
                ) as resp:
                    body = await resp.json()
                    out.append((resp.status, body.get("error", {}).get("code", "")))
        return out

    results = asyncio.run(calls())
    # The first opens a session; the next ones are over FREE's single session; the
    # sixth is over the license's requests per hour (checked before sessions).
    assert results[0][0] == 201
    assert all(r == (403, "too_many_sessions") for r in results[1:FREE_PER_HOUR])
    assert results[FREE_PER_HOUR] == (429, "rate_limited")


def test_a_throttled_license_gets_half_its_limit_on_the_running_server_until_reinstated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anti-piracy tier 2 halves requests_per_hour; the server applies it once the key
    cache window has passed, counting the hour's requests already made; `license
    reinstate` gives the whole limit back."""
    from connectsw.licensing.responses import ResponseAction, apply

    from .serving import run_cli

    per_hour, window = 8, 0.5
    limits = {
        "CONNECTSW_LICENSING__TIERS__FREE__REQUESTS_PER_HOUR": str(per_hour),
        "CONNECTSW_LICENSING__TIERS__FREE__FEATURES": '["local", "server"]',
    }
    server = start_server(
        tmp_path / "data", CONNECTSW_LICENSING__KEY_CACHE_SECONDS=str(window), **limits
    )
    try:
        for name, value in limits.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(data_dir=server.data)
        store = open_store(settings.store_url)
        licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
        record, key = licenses.issue(Tier.FREE, "a@b.io")

        async def calls(n: int) -> list[int]:
            out = []
            async with aiohttp.ClientSession() as session:
                for _ in range(n):
                    async with session.post(
                        f"{server.url}/v1/sessions", headers={"X-License-Key": key}
                    ) as resp:
                        out.append(resp.status)
            return out

        assert asyncio.run(calls(2)) == [201, 403]  # 2 of 8 used (403: FREE's one session)
        action = ResponseAction(record.id, 2, "burst", 0.8, {"bursts": 4}, "w1")
        assert apply(action, licenses=licenses, store=store, settings=settings).done
        time.sleep(window + 0.3)
        # 4 per hour now, 2 used this hour: 2 more, then refused.
        assert asyncio.run(calls(3)) == [403, 403, 429]
        out = run_cli(["license", "reinstate", record.id], server.data, tmp_path)
        assert out.returncode == 0, out.stderr
        time.sleep(window + 0.3)
        assert asyncio.run(calls(5)) == [403, 403, 403, 403, 429]  # 8 again, 4 used
        store.close()
    finally:
        assert server.stop(10) == 0
