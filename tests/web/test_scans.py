"""The anti-piracy scan runs periodically in a running server, off the event loop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .serving import http, start_server

pytestmark = pytest.mark.slow


def _scans(url: str) -> float:
    _, _, raw = http("GET", url + "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("connectsw_antipiracy_scans_total "):
            return float(line.split()[-1])
    return 0.0


def test_the_server_scans_every_interval(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", CONNECTSW_ANTIPIRACY__SCAN_INTERVAL="0.3")
    try:
        deadline = time.monotonic() + 30
        while _scans(server.url) < 2:
            assert time.monotonic() < deadline, "no periodic scan ran"
            time.sleep(0.2)
        status, _, _ = http("GET", server.url + "/healthz")
        assert status == 200  # requests are answered meanwhile
    finally:
        assert server.stop() == 0


def test_no_scan_when_the_interval_is_0(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", CONNECTSW_ANTIPIRACY__SCAN_INTERVAL="0")
    try:
        time.sleep(1.0)
        assert _scans(server.url) == 0
    finally:
        server.stop()
