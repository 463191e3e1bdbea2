"""The admin license endpoints on a real `connectsw serve`: the admin token, the
service's rules, stable error codes, and a suspension seen by the key cache."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectsw.conf.settings import load_settings
from connectsw.licensing.certificates import new_signing_key, private_key_pem, verify_certificate
from connectsw.licensing.secrets import signing_key

from .serving import Served, run_cli, start_server

pytestmark = pytest.mark.slow

CACHE_SECONDS = 0.5
TOKEN = "admin-" + "t" * 40
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
#: The server's settings here: a short key cache, no per-IP limit in the way.
SETTINGS = {
    "CONNECTSW_LICENSING__KEY_CACHE_SECONDS": str(CACHE_SECONDS),
    "CONNECTSW_SERVER__IP_RATE_LIMIT": "100000/minute",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("admin")
    server = start_server(root / "data", fast_dask=False, CONNECTSW_ADMIN_TOKEN=TOKEN, **SETTINGS)
    try:
        yield server
    finally:
        assert server.stop(10) == 0


def call(
    server: Served,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            kind = resp.headers.get("Content-Type", "")
            value = json.loads(text) if kind.startswith("application/json") else text.decode()
            return resp.status, value, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def admin(server: Served, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, value, _ = call(server, method, path, body, ADMIN)
    return status, value


def error(result: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> tuple[int, str]:
    status, body = result[0], result[1]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return status, body["error"]["code"]


def issue(server: Served, **fields: Any) -> dict[str, Any]:
    status, body = admin(
        server, "POST", "/v1/admin/licenses", {"tier": "PRO", "email": "a@b.io", **fields}
    )
    assert status == 201, body
    return dict(body)


ENDPOINTS = [
    ("GET", "/v1/admin/licenses"),
    ("POST", "/v1/admin/licenses"),
    ("GET", "/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA"),
    ("POST", "/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA/suspend"),
    ("POST", "/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA/reinstate"),
    ("POST", "/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA/revoke"),
    ("GET", "/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA/certificate"),
]
WRONG = [
    {},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"X-Admin-Token": TOKEN.upper()},
    {"X-Admin-Token": ""},
    {"X-Admin-Token": "\u00e9" * 46},
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_without_the_admin_token_every_endpoint_is_401_saying_nothing_more(
    server: Served, method: str, path: str
) -> None:
    messages = set()
    for headers in WRONG:
        body = {"tier": "PRO", "email": "a@b.io"} if method == "POST" else None
        status, value, response_headers = call(server, method, path, body, headers)
        assert error((status, value)) == (401, "admin_required")
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        messages.add(value["error"]["message"])
    assert len(messages) == 1 and TOKEN not in messages.pop()


def test_both_header_forms_are_accepted(server: Served) -> None:
    assert call(server, "GET", "/v1/admin/licenses", headers={"X-Admin-Token": TOKEN})[0] == 200
    assert (
        call(server, "GET", "/v1/admin/licenses", headers={"Authorization": f"bearer  {TOKEN}"})[0]
        == 200
    )


def test_issue_shows_the_key_once_and_the_key_opens_a_session(server: Served) -> None:
    status, body, headers = call(
        server,
        "POST",
        "/v1/admin/licenses",
        {"tier": "business", "email": "ops@example.com", "users": 7, "days": 30},
        ADMIN,
    )
    assert status == 201
    license_id, key = body["id"], body["key"]
    assert key.startswith(license_id + "-") and body["tier"] == "BUSINESS"
    assert body["entitlements"]["max_users"] == 7 and body["status"] == "active"
    assert headers["Location"] == f"/v1/admin/licenses/{license_id}"
    status, shown = admin(server, "GET", f"/v1/admin/licenses/{license_id}")
    assert status == 200 and "key" not in shown
    assert {k: v for k, v in body.items() if k != "key"} == shown
    status, listed = admin(server, "GET", "/v1/admin/licenses?limit=1000")
    assert status == 200 and shown in listed["licenses"]
    assert admin(server, "GET", f"/v1/admin/licenses/{license_id.lower()}")[0] == 200
    opened = call(server, "POST", "/v1/sessions", headers={"X-License-Key": key})
    assert opened[0] == 201


def test_a_suspension_through_the_api_is_seen_within_the_cache_window(server: Served) -> None:
    license_id, key = (lambda b: (b["id"], b["key"]))(issue(server))
    path = f"/v1/admin/licenses/{license_id}"
    login = {"X-License-Key": key}
    assert call(server, "POST", "/v1/sessions", headers=login)[0] == 201
    status, body = admin(server, "POST", f"{path}/suspend", {"reason": "shared key"})
    assert status == 200 and (body["status"], body["reason"]) == ("suspended", "shared key")
    time.sleep(CACHE_SECONDS + 0.2)
    status, refused, _ = call(server, "POST", "/v1/sessions", headers=login)
    assert error((status, refused)) == (403, "suspended")
    assert "shared key" in refused["error"]["message"]
    status, body = admin(server, "POST", f"{path}/reinstate")
    assert status == 200 and (body["status"], body["reason"]) == ("active", None)
    time.sleep(CACHE_SECONDS + 0.2)
    assert call(server, "POST", "/v1/sessions", headers=login)[0] == 201
    status, body = admin(server, "POST", f"{path}/revoke", {"reason": "chargeback"})
    assert status == 200 and body["status"] == "revoked"
    time.sleep(CACHE_SECONDS + 0.2)
    assert error(call(server, "POST", "/v1/sessions", headers=login)) == (403, "revoked")
    # The service's state table: a revoked license stays revoked.
    assert error(admin(server, "POST", f"{path}/reinstate", {})) == (409, "invalid_state")
    assert error(admin(server, "POST", f"{path}/suspend", {"reason": "x"})) == (
        409,
        "invalid_state",
    )


def test_the_certificate_verifies_offline_with_the_servers_public_key(server: Served) -> None:
    license_id = issue(server, days=10)["id"]
    status, text, headers = call(
        server, "GET", f"/v1/admin/licenses/{license_id}/certificate", headers=ADMIN
    )
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    public = signing_key(load_settings(data_dir=server.data)).public_key()
    cert = verify_certificate(text, public)
    assert cert.license_id == license_id and cert.tier.value == "PRO"
    admin(server, "POST", f"/v1/admin/licenses/{license_id}/suspend", {"reason": "unpaid"})
    refused = admin(server, "GET", f"/v1/admin/licenses/{license_id}/certificate")
    assert error(refused) == (409, "suspended")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("POST", "/suspend"), ("POST", "/revoke"), ("GET", "/certificate")],
)
def test_an_unknown_license_is_404(server: Served, method: str, path: str) -> None:
    body = {"reason": "x"} if method == "POST" else None
    result = admin(server, method, f"/v1/admin/licenses/CSFW-PRO-AAAAAAAAAAAAAAAA{path}", body)
    assert error(result) == (404, "no_such_resource")


GOOD = {"tier": "PRO", "email": "a@b.io"}


@pytest.mark.parametrize(
    ("path", "raw", "expected"),
    [
        ("", b"{", (400, "invalid_json")),
        ("", b"\xff\xfe{}", (400, "invalid_json")),
        ("", b"[" * 50_000, (400, "invalid_json")),
        ("", json.dumps([GOOD]).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "users": "5"}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "users": True}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "days": 1.5}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "seats": 3}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "tier": "GOLD"}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "email": "nobody"}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "users": 0}).encode(), (400, "invalid_request")),
        ("", json.dumps({**GOOD, "days": 10**30}).encode(), (400, "invalid_request")),
        ("", json.dumps({"tier": "PRO"}).encode(), (400, "invalid_request")),
        ("", b"", (400, "invalid_request")),
        ("", json.dumps({**GOOD, "email": "a" * 70_000}).encode(), (413, "payload_too_large")),
        ("", b" " * 2_000_000, (413, "payload_too_large")),
        ("/{id}/suspend", b"", (400, "invalid_request")),  # a reason is required
        ("/{id}/suspend", json.dumps({"reason": 5}).encode(), (400, "invalid_request")),
        ("/{id}/suspend", json.dumps({"reason": "r" * 501}).encode(), (400, "invalid_request")),
        ("/{id}/reinstate", json.dumps({"reason": "x"}).encode(), (400, "invalid_request")),
        ("/{id}/revoke", json.dumps({"why": "x"}).encode(), (400, "invalid_request")),
    ],
)
def test_bad_bodies_are_4xx_with_stable_codes(
    server: Served, path: str, raw: bytes, expected: tuple[int, str]
) -> None:
    if "{id}" in path:
        path = path.replace("{id}", issue(server)["id"])
    result = call(server, "POST", f"/v1/admin/licenses{path}", headers=ADMIN, raw=raw)
    assert error(result) == expected
    message = result[1]["error"]["message"]
    assert "a" * 100 not in message and "Traceback" not in message


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=ten", "limit=1&limit=2"])
def test_a_bad_list_limit_is_400(server: Served, query: str) -> None:
    assert error(admin(server, "GET", f"/v1/admin/licenses?{query}")) == (400, "invalid_request")


def test_production_mode_without_an_admin_token_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text('mode = "production"\n')
    (tmp_path / "k.pem").write_bytes(private_key_pem(new_signing_key()))
    env = {**SETTINGS, "CONNECTSW_LICENSE_SECRET": "ab" * 32}
    serve, data = ["serve", "--port", "0"], tmp_path / "data"
    key_file = str(tmp_path / "k.pem")
    proc = run_cli(
        serve, data, tmp_path, 30, fast_dask=False, **env, CONNECTSW_SIGNING_KEY_FILE=key_file
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("Error: no admin token: set CONNECTSW_ADMIN_TOKEN")
    assert "Traceback" not in proc.stderr and not proc.stdout
    # ... and without a signing key, it names that.
    proc = run_cli(serve, data, tmp_path, 30, fast_dask=False, **env, CONNECTSW_ADMIN_TOKEN=TOKEN)
    assert proc.returncode == 2, proc.stderr
    assert "CONNECTSW_SIGNING_KEY_FILE" in proc.stderr and "Traceback" not in proc.stderr
