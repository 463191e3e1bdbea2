"""The client IP: the peer's, or from X-Forwarded-For when the peer is a trusted proxy.

The algorithm (web/clientip.py): walk X-Forwarded-For from the right, skipping
trusted proxies; the first address that is not one is the client. A header that
cannot be read where it matters is ignored (the peer is the client), never a 500.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.stores import open_store
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.sessions import token_digest
from connectsw.licensing.tiers import Tier
from connectsw.web.clientip import client_address

from .serving import start_server

TRUSTED = [ip_network("10.0.0.0/8"), ip_network("192.0.2.1"), ip_network("2001:db8::/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", [], "192.0.2.1"),  # no header: the proxy itself
        ("192.0.2.1", ["203.0.113.5"], "203.0.113.5"),
        ("192.0.2.1", ["1.1.1.1, 203.0.113.5"], "203.0.113.5"),  # left part is the client's say
        ("192.0.2.1", ["203.0.113.5, 10.1.2.3"], "203.0.113.5"),  # a chain of trusted proxies
        ("192.0.2.1", ["1.1.1.1", "203.0.113.5,10.0.0.9"], "203.0.113.5"),  # several lines
        ("192.0.2.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the farthest
        ("192.0.2.1", ["garbage, 203.0.113.5"], "203.0.113.5"),  # never read: not believed
        ("192.0.2.1", ["2001:DB8:1::5, 2001:0db8::1"], "2001:db8:1::5"),  # IPv6, all trusted
        ("192.0.2.1", ["2001:470::5"], "2001:470::5"),
        ("::ffff:192.0.2.1", ["203.0.113.5"], "203.0.113.5"),  # IPv4-mapped peer
        ("203.0.113.9", ["203.0.113.5"], "203.0.113.9"),  # an untrusted peer's header is ignored
        (None, ["203.0.113.5"], ""),  # no peer address (a Unix socket)
    ],
)
def test_the_right_most_untrusted_address(
    peer: str | None, forwarded: list[str], expected: str
) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


@pytest.mark.parametrize(
    "forwarded",
    [
        ["garbage"],
        ["203.0.113.5, "],
        ["203.0.113.5,,10.0.0.1"],
        ["unknown"],
        ["203.0.113.5:4711"],
        ["[2001:470::5]"],
        [""],
        ["203.0.113.5, 10.0.0.1 10.0.0.2"],
        ["\u0661.\u0662.\u0663.\u0664"],
    ],
)
def test_a_malformed_header_leaves_the_peer(forwarded: list[str]) -> None:
    assert client_address("10.9.9.9", forwarded, TRUSTED) == "10.9.9.9"


def test_no_trusted_proxy_no_forwarded_for() -> None:
    assert client_address("10.0.0.1", ["203.0.113.5"], []) == "10.0.0.1"


# A real server on loopback: 127.0.0.1 is the (trusted or not) proxy.

PER_IP = 50


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Licenses]]:
    """The server; ``request.param``: its trusted proxies (None: the setting unset)."""
    trusted = request.param
    proxies = {} if trusted is None else {"CONNECTSW_SERVER__TRUSTED_PROXIES": json.dumps(trusted)}
    limit = f"{PER_IP}/minute"
    server = start_server(
        tmp_path / "data", fast_dask=False, CONNECTSW_SERVER__IP_RATE_LIMIT=limit, **proxies
    )
    try:
        settings = load_settings(data_dir=server.data)
        secret = license_secret(settings)
        yield server.url, Licenses(open_store(settings.store_url), secret, settings.licensing.tiers)
    finally:
        assert server.stop(10) == 0


def call(url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def remaining(url: str, forwarded: str | None = None) -> int:
    """The per-IP quota left after one request, as the server counted it."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    status, response_headers, _ = call(f"{url}/v1/nothing", "GET", headers)
    assert status == 404
    return int(response_headers["RateLimit-Remaining"])


def session_ip(url: str, licenses: Licenses, forwarded: str) -> str:
    _, key = licenses.issue(Tier.ENTERPRISE, "a@example.com")
    headers = {"X-License-Key": key, "X-Forwarded-For": forwarded}
    status, _, body = call(f"{url}/v1/sessions", "POST", headers)
    assert status == 201, body
    record = licenses.store.session_by_token(token_digest(json.loads(body)["token"]))
    assert record is not None
    return record.ip


@pytest.mark.slow
@pytest.mark.parametrize("server", [["127.0.0.0/8", "::1"]], indirect=True)
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_quota(
    server: tuple[str, Licenses],
) -> None:
    url, licenses = server
    assert remaining(url, "203.0.113.1") == PER_IP - 1
    assert remaining(url, "198.51.100.7, 203.0.113.1") == PER_IP - 2  # spoofed left part
    assert remaining(url, "203.0.113.2") == PER_IP - 1
    assert remaining(url) == PER_IP - 1  # the proxy's own requests: its address
    assert remaining(url, "not an address") == PER_IP - 2  # ignored: the proxy's address
    assert remaining(url, "203.0.113.1, nonsense") == PER_IP - 3
    assert session_ip(url, licenses, "203.0.113.3") == "203.0.113.3"


@pytest.mark.slow
@pytest.mark.parametrize("server", [None], indirect=True)
def test_without_trusted_proxies_forwarded_for_is_ignored(server: tuple[str, Licenses]) -> None:
    url, licenses = server
    assert remaining(url, "203.0.113.1") == PER_IP - 1
    assert remaining(url, "203.0.113.2") == PER_IP - 2  # no fresh quota by claiming an address
    assert remaining(url) == PER_IP - 3
    assert session_ip(url, licenses, "203.0.113.3") == "127.0.0.1"
