"""The API server as a client meets it: `connectsw serve` on a loopback port, real HTTP.

Licenses are issued through the service on the same store the server reads (the
data dir's SQLite file and local secret), as `connectsw license issue` does.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.stores import open_store
from connectsw.licensing.keys import new_key
from connectsw.licensing.models import LicenseStatus
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

from .serving import run_cli, start_server

pytestmark = pytest.mark.slow

CACHE_SECONDS = 0.5
SETTINGS = {"CONNECTSW_LICENSING__KEY_CACHE_SECONDS": str(CACHE_SECONDS)}


@dataclass
class Server:
    url: str
    licenses: Licenses

    def issue(self, tier: Tier = Tier.PRO) -> tuple[str, str]:
        record, key = self.licenses.issue(tier, "a@example.com")
        return record.id, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    data = root / "data"
    served = start_server(data, fast_dask=False, **SETTINGS)
    old = os.environ.get("CONNECTSW_DATA_DIR")
    os.environ["CONNECTSW_DATA_DIR"] = str(data)
    try:
        settings = load_settings(data_dir=data)
        licenses = Licenses(
            open_store(settings.store_url), license_secret(settings), settings.licensing.tiers
        )
        yield Server(served.url, licenses)
    finally:
        if old is None:
            os.environ.pop("CONNECTSW_DATA_DIR", None)
        else:
            os.environ["CONNECTSW_DATA_DIR"] = old
        served.stop(10, strict=True)


def call(
    server: Server, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(server.url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def error_code(result: tuple[int, Any]) -> tuple[int, str]:
    status, body = result
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return status, body["error"]["code"]


def test_health_and_readiness(server: Server) -> None:
    assert call(server, "GET", "/healthz") == (200, {"status": "ok"})
    assert call(server, "GET", "/readyz") == (200, {"status": "ready"})


def test_a_key_opens_a_session_whose_token_heartbeats_and_logs_out(server: Server) -> None:
    license_id, key = server.issue()
    status, body = call(server, "POST", "/v1/sessions", {"X-License-Key": key})
    assert status == 201 and body["licenseId"] == license_id and not body["flagged"]
    token, sid = body["token"], body["sessionId"]
    assert (
        call(server, "POST", f"/v1/sessions/{sid}/heartbeat", {"X-Session-Token": token})[0] == 200
    )
    bearer = {"Authorization": f"Bearer {token}"}
    assert call(server, "POST", f"/v1/sessions/{sid}/heartbeat", bearer)[0] == 200
    assert call(server, "DELETE", f"/v1/sessions/{sid}", bearer) == (204, None)
    assert error_code(call(server, "POST", f"/v1/sessions/{sid}/heartbeat", bearer)) == (
        401,
        "session_ended",
    )


def test_another_sessions_id_is_not_found(server: Server) -> None:
    _, key = server.issue()
    _, mine = call(server, "POST", "/v1/sessions", {"X-License-Key": key})
    _, other_key = server.issue()
    _, theirs = call(server, "POST", "/v1/sessions", {"X-License-Key": other_key})
    headers = {"X-Session-Token": mine["token"]}
    assert error_code(call(server, "DELETE", f"/v1/sessions/{theirs['sessionId']}", headers)) == (
        404,
        "no_such_resource",
    )
    theirs_headers = {"X-Session-Token": theirs["token"]}
    path = f"/v1/sessions/{theirs['sessionId']}/heartbeat"
    assert call(server, "POST", path, theirs_headers)[0] == 200  # still alive


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (401, "missing_credentials")),
        ({"X-License-Key": "CSFW-PRO-A7F2E9D1-X8K3"}, (401, "invalid_format")),
        ({"X-License-Key": new_key(Tier.PRO, b"f" * 32).key}, (401, "invalid_format")),
    ],
)
def test_bad_keys_are_refused_with_stable_codes(
    server: Server, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    assert error_code(call(server, "POST", "/v1/sessions", headers)) == expected


def test_an_unknown_well_formed_key_is_not_found(server: Server) -> None:
    key = new_key(Tier.PRO, server.licenses.secret).key  # tagged right, never issued
    assert error_code(call(server, "POST", "/v1/sessions", {"X-License-Key": key})) == (
        401,
        "not_found",
    )


def test_a_suspension_is_seen_within_the_cache_window(server: Server) -> None:
    license_id, key = server.issue()
    headers = {"X-License-Key": key}
    assert call(server, "POST", "/v1/sessions", headers)[0] == 201
    server.licenses.change(license_id, LicenseStatus.SUSPENDED, "shared key")
    time.sleep(CACHE_SECONDS + 0.2)
    status, body = call(server, "POST", "/v1/sessions", headers)
    assert (status, body["error"]["code"]) == (403, "suspended")
    assert "shared key" in body["error"]["message"] and key not in body["error"]["message"]
    server.licenses.change(license_id, LicenseStatus.REVOKED)
    time.sleep(CACHE_SECONDS + 0.2)
    assert error_code(call(server, "POST", "/v1/sessions", headers)) == (403, "revoked")


def test_the_tiers_sessions_then_the_grace_then_refusal(server: Server) -> None:
    license_id, key = server.issue(Tier.PRO)  # 2 allowed, 3 with the 50 % grace
    headers = {"X-License-Key": key}
    flags = [call(server, "POST", "/v1/sessions", headers)[1]["flagged"] for _ in range(3)]
    assert flags == [False, False, True]
    assert error_code(call(server, "POST", "/v1/sessions", headers)) == (403, "too_many_sessions")
    events = server.licenses.store.security_events(license_id)
    assert [e.kind for e in events] == ["concurrent_sessions"]
    assert events[0].data["active"] == 3 and events[0].data["allowed"] == 2


def test_unknown_routes_and_methods_answer_in_the_error_shape(server: Server) -> None:
    assert error_code(call(server, "GET", "/v1/nothing")) == (404, "no_such_resource")
    assert error_code(call(server, "GET", "/v1/sessions")) == (405, "method_not_allowed")


def test_production_mode_without_a_secret_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text('mode = "production"\n')
    proc = run_cli(
        ["serve", "--port", "0"], tmp_path / "data", tmp_path, 30, fast_dask=False, **SETTINGS
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("Error: no license secret: set CONNECTSW_LICENSE_SECRET")
    assert "Traceback" not in proc.stderr


def test_metrics_in_prometheus_format(server: Server) -> None:
    call(server, "GET", "/healthz")
    call(server, "POST", "/v1/sessions", {"X-License-Key": "CSFW-PRO-A7F2E9D1-X8K3"})
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    ok = 'connectsw_http_requests_total{endpoint="/healthz",method="GET",status="200"}'
    assert samples[ok] >= 1
    refused = 'connectsw_http_requests_total{endpoint="/v1/sessions",method="POST",status="401"}'
    assert samples[refused] >= 1
    assert samples['connectsw_http_errors_total{code="invalid_format"}'] >= 1
    assert (
        'connectsw_http_request_duration_seconds_bucket{endpoint="/healthz",le="0.005"}' in samples
    )
    assert "connectsw_rate_limits_exceeded_total" in samples
