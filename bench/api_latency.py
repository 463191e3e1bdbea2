"""Authenticated ``GET /v1/execution/{id}`` against a bare aiohttp handler, on loopback.

Both servers are real subprocesses; the same client (aiohttp, ``--connections``
concurrent connections, keep-alive) loads each for ``--seconds`` after a warm-up,
alternating which goes first. The bare server answers the very body the real one
does, from memory, with no middleware: the ratio is what authentication (key
cache, rate limits, session), the store reads and the view cost.

Goals (issue 6): throughput >= 0.5 x bare, p99 <= 1.5 x bare p99 at 50 connections.

    python bench/api_latency.py [--connections 50] [--seconds 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

BARE = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/execution/{id}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(
        CONNECTSW_DATA_DIR=str(data),
        CONNECTSW_DASK__PROCESSES="false",
        CONNECTSW_DASK__N_WORKERS="1",
        CONNECTSW_SERVER__IP_RATE_LIMIT="100000000/minute",
    )
    return env


def _call(method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def start_real(data: Path) -> tuple[subprocess.Popen[str], str, dict[str, str], str]:
    """The real server with one ENTERPRISE license, a session and an execution at a
    checkpoint: (process, base URL, auth headers, execution id)."""
    env = _env(data)
    issued = subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", "license", "issue", "--tier", "ENTERPRISE",
         "--email", "bench@example.com", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(issued.stdout)["key"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectsw.cli.main", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    token = _call("POST", url + "/v1/sessions", {"X-License-Key": key})["token"]
    headers = {"X-License-Key": key, "X-Session-Token": token}
    body = {"command": "new product", "args": ["Bench target"]}
    execution = _call("POST", url + "/v1/execute", headers, body)["executionId"]
    deadline = time.monotonic() + 120
    while _call("GET", f"{url}/v1/execution/{execution}", headers)["status"] != (
        "awaiting_checkpoint"
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the bench's execution never reached its checkpoint")
        time.sleep(0.2)
    return proc, url, headers, execution


def start_bare(body_file: Path) -> tuple[subprocess.Popen[str], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(body_file), str(port)], text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/v1/execution/x", timeout=2).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def load(
    url: str, headers: dict[str, str], connections: int, seconds: float
) -> dict[str, float]:
    """Requests per second, p50 and p99 latency (ms); every answer must be 200."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                start = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                if record:
                    latencies.append((time.perf_counter() - start) * 1000)

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warm, False) for _ in range(connections)))
        began = time.perf_counter()
        until = began + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(connections)))
        elapsed = time.perf_counter() - began
    if errors:
        raise SystemExit(f"{errors} answers were not 200 (rate limits? a dead server?)")
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real, url, headers, execution = start_real(Path(tmp) / "data")
        body_file = Path(tmp) / "body.json"
        request = urllib.request.Request(f"{url}/v1/execution/{execution}", headers=headers)
        with urllib.request.urlopen(request) as response:
            body_file.write_bytes(response.read())
        bare, bare_url = start_bare(body_file)
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "api": []}
        try:
            for i in range(args.repeat):
                order = ["bare", "api"] if i % 2 == 0 else ["api", "bare"]
                for which in order:
                    target = (
                        f"{bare_url}/v1/execution/{execution}"
                        if which == "bare"
                        else f"{url}/v1/execution/{execution}"
                    )
                    got = asyncio.run(load(target, headers, args.connections, args.seconds))
                    runs[which].append(got)
                    print(
                        f"{which:5} run {i + 1}: {got['rps']:8.0f} req/s"
                        f"  p50 {got['p50']:7.2f} ms  p99 {got['p99']:7.2f} ms",
                        flush=True,
                    )
        finally:
            for proc in (real, bare):
                proc.terminate()
                proc.wait(30)
    med = {
        which: {m: statistics.median(r[m] for r in results) for m in ("rps", "p50", "p99")}
        for which, results in runs.items()
    }
    print(
        f"\n{args.connections} connections, {args.seconds:g} s each, median of {args.repeat}:"
        f"\n  bare aiohttp: {med['bare']['rps']:.0f} req/s, p50 {med['bare']['p50']:.2f} ms,"
        f" p99 {med['bare']['p99']:.2f} ms"
        f"\n  API (authenticated): {med['api']['rps']:.0f} req/s, p50 {med['api']['p50']:.2f} ms,"
        f" p99 {med['api']['p99']:.2f} ms"
        f"\n  throughput ratio {med['api']['rps'] / med['bare']['rps']:.2f} (goal >= 0.5),"
        f" p99 ratio {med['api']['p99'] / med['bare']['p99']:.2f} (goal <= 1.5)"
    )


if __name__ == "__main__":
    main()
