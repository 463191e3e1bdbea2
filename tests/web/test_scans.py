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


def test_the_periodic_scan_applies_the_tiers_once(tmp_path: Path) -> None:
    """With ``scan_apply``, the server's own scan (the CLI's and the admin API's function)
    suspends a license shared across 15 countries, once."""
    import json

    from .usage_events import SPREAD, as_csv, events

    token = "admin-" + "s" * 40
    admin = {"Authorization": f"Bearer {token}"}
    server = start_server(
        tmp_path / "data",
        CONNECTSW_ADMIN_TOKEN=token,
        CONNECTSW_ANTIPIRACY__SCAN_INTERVAL="0.5",
        CONNECTSW_ANTIPIRACY__SCAN_APPLY="true",
    )
    try:
        body = {"tier": "PRO", "email": "shared@example.com"}
        status, _, raw = http(
            "POST",
            server.url + "/v1/admin/licenses",
            body,
            {**admin, "Content-Type": "application/json"},
        )
        assert status == 201, raw
        license_id = json.loads(raw)["id"]
        status, _, raw = http(
            "POST",
            server.url + "/v1/admin/analytics/import",
            headers=admin,
            data=as_csv(events(license_id, SPREAD)),
        )
        assert status == 200, raw
        deadline = time.monotonic() + 60
        while True:
            _, _, raw = http("GET", f"{server.url}/v1/admin/licenses/{license_id}", headers=admin)
            if json.loads(raw)["status"] == "suspended":
                break
            assert time.monotonic() < deadline, "the periodic scan never suspended it"
            time.sleep(0.3)
        scanned = _scans(server.url)
        while _scans(server.url) < scanned + 2:  # two more scans of the same data
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        _, _, raw = http("GET", server.url + "/v1/admin/outbox", headers=admin)
        assert [m["license_id"] for m in json.loads(raw)] == [license_id]
    finally:
        assert server.stop() == 0
