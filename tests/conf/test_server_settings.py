"""``[server]`` settings: trusted proxies are IP addresses or CIDR networks, none by default."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.errors import ConfigError


def write_config(text: str) -> None:
    (Path.cwd() / "connectsw.toml").write_text(text, encoding="utf-8")


def test_no_proxy_is_trusted_by_default() -> None:
    assert load_settings().server.trusted_proxies == []


def test_addresses_and_networks_of_both_families() -> None:
    write_config('[server]\ntrusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]\n')
    proxies = load_settings().server.trusted_proxies
    assert proxies == [
        ip_network("10.0.0.0/8"),
        ip_network("192.0.2.7/32"),
        ip_network("2001:db8::/32"),
    ]


def test_from_the_environment_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_SERVER__TRUSTED_PROXIES", '["127.0.0.1", "::1"]')
    assert load_settings().server.trusted_proxies == [ip_network("127.0.0.1"), ip_network("::1")]


@pytest.mark.parametrize(
    "value",
    ['["10.0.0.300"]', '["proxy.example.com"]', '["10.0.0.1/8"]', '["10.0.0.0/33"]', '"10.0.0.1"'],
)
def test_anything_else_is_refused_naming_the_setting_not_the_value(value: str) -> None:
    write_config(f"[server]\ntrusted_proxies = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "server.trusted_proxies" in message
    assert "10.0.0" not in message and "example" not in message


def test_the_default_ip_rate_limit_parses() -> None:
    """The validator takes the default without parsing it (importing ``limits`` costs
    every command ~40 ms): it is checked here instead."""
    from limits import parse

    from connectsw.conf.settings import DEFAULT_IP_RATE_LIMIT

    assert parse(DEFAULT_IP_RATE_LIMIT).amount == 100
