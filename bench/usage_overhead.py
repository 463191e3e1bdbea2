"""What recording usage and audit costs per request: the API with and without the usage
middleware, in one run, on the authenticated hot path (key check, cached lookup, rate
limits; no store write in the handler).

    .venv/bin/python bench/usage_overhead.py [--requests N] [--rounds R] [--concurrency C]

Client and server share one event loop (aiohttp's test server on loopback), so the
absolute figures include the client; the difference between the two variants is the
middleware's cost (the event, its JSON line, one write(2); the batched audit insert
and the compaction run in the worker thread meanwhile, on the same 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from connectsw.conf.settings import load_settings
from connectsw.core.stores import open_store
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier
from connectsw.web.app import make_app
from connectsw.web.sessions import authenticate


async def hot_path(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response({"ok": True})


async def run(data: Path, key: str, usage: bool, n: int, concurrency: int) -> list[float]:
    settings = load_settings(data_dir=data, server={"ip_rate_limit": "10000000/minute"})
    app = make_app(settings)
    if not usage:
        app.middlewares.pop(0)  # the usage middleware is the outermost
    app.router.add_get("/v1/bench", hot_path)
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("/v1/bench"))
    times: list[float] = []
    try:
        async with ClientSession(headers={"X-License-Key": key}) as client:

            async def worker(count: int) -> None:
                for _ in range(count):
                    t0 = time.perf_counter()
                    async with client.get(url) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
                    times.append(time.perf_counter() - t0)

            for _ in range(50):  # warm up: the key's lookup is cached after the first
                async with client.get(url) as resp:
                    await resp.read()
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
            await asyncio.sleep(0)
            cpu = time.process_time() - c0
            times.append(-(time.perf_counter() - t0))  # wall time, marked negative
            times.append(-cpu)  # CPU time of the process (client + server + worker thread)
    finally:
        await server.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        settings = load_settings(data_dir=data)
        store = open_store(settings.store_url)
        licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
        results: dict[bool, list[float]] = {False: [], True: []}
        walls: dict[bool, float] = {False: 0.0, True: 0.0}
        cpus: dict[bool, float] = {False: 0.0, True: 0.0}
        for _ in range(args.rounds):
            for usage in (False, True):  # alternate, so drift hits both alike
                _, key = licenses.issue(Tier.ENTERPRISE, "bench@example.com")
                times = asyncio.run(run(data, key, usage, args.requests, args.concurrency))
                cpus[usage] += -times.pop()
                walls[usage] += -times.pop()
                results[usage] += times
        store.close()
    print(f"{args.rounds} rounds x {args.requests} requests, concurrency {args.concurrency}")
    for usage in (False, True):
        t = sorted(results[usage])
        p50, p99 = t[len(t) // 2], t[int(len(t) * 0.99)]
        rate = len(t) / walls[usage]
        name = "with usage + audit" if usage else "without"
        print(
            f"{name:>20}: {rate:8.0f} req/s  mean {statistics.fmean(t) * 1e6:7.1f} us"
            f"  p50 {p50 * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us"
            f"  CPU {cpus[usage] / len(t) * 1e6:6.1f} us/request"
        )
    base, used = statistics.fmean(results[False]), statistics.fmean(results[True])
    print(f"overhead per request: {(used - base) * 1e6:+.1f} us ({used / base - 1:+.1%} of mean)")
    cpu = (cpus[True] - cpus[False]) / len(results[True])
    print(f"CPU overhead per request: {cpu * 1e6:+.1f} us")


if __name__ == "__main__":
    main()
