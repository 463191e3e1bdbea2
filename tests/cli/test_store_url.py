"""No part of a store URL's password reaches the terminal (found by the new-user trial).

``postgresql://u:p@ss#w@127.0.0.1:1/db`` (unencoded) made libpq read the password
``p`` and the host ``ss#w@127.0.0.1``, and its message quoted ``ss#w``. A URL that
libpq may split elsewhere than our redaction does is refused before libpq sees it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli


@pytest.mark.parametrize(
    "password",
    ["Qz@Kx#Vw", "Qz#Kx", "Qz/Kx", "Qz?Kx@Vw", "Qz@Kx", "Qz Kx", "Qz%zzKx", "Qz[Kx]"],
)
def test_an_unencoded_password_is_refused_without_any_part_of_it(cli: Cli, password: str) -> None:
    cli.env["CONNECTSW_STORE__URL"] = f"postgresql://u:{password}@127.0.0.1:1/db"
    res = cli("status")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert "percent-encoded" in line
    for piece in filter(None, re.split(r"[@#/?\[\] %]", password)):
        assert piece not in line, line


def test_an_encoded_password_reaches_the_server_and_stays_masked(cli: Cli) -> None:
    cli.env["CONNECTSW_STORE__URL"] = "postgresql://u:Qz%40Kx%23Vw@127.0.0.1:1/db"
    res = cli("status")
    assert res.returncode == ExitCode.STORE, res
    line = res.error_line()
    assert "postgresql://u:***@127.0.0.1:1/db" in line
    for piece in ("Qz", "Kx", "Vw"):
        assert piece not in line, line


# -- a secret query parameter: libpq cuts it at "&" and quotes the pieces -----------------

PIECES = ("Qzx", "Kvy", "Wmt")
QUERY_SECRETS = [
    "Qzx&Kvy;Wmt",
    "Qzx&Kvy=Wmt",
    "Qzx=Kvy&Wmt",
    "Qzx&sslmode=Kvy&Wmt",
    "Qzx&Kvy&Wmt",
    "Qzx#Kvy&Wmt",
]


def _server(postgres_server: str) -> str:
    """``host:port`` of the test server."""
    parts = urlsplit(postgres_server)
    return f"{parts.hostname}:{parts.port}"


@pytest.mark.parametrize("secret", QUERY_SECRETS)
@pytest.mark.parametrize("name", ["password", "sslpassword"])
@pytest.mark.parametrize("reach", ["server", "unreachable"])
def test_a_separator_in_a_secret_query_parameter_is_refused_unquoted(
    cli: Cli, postgres_server: str, secret: str, name: str, reach: str
) -> None:
    """``?password=Qzx&Kvy;Wmt`` made libpq quote ``Kvy;Wmt`` ("missing key/value
    separator"), and the masked URL in the message showed ``&Kvy;Wmt``."""
    where = _server(postgres_server) if reach == "server" else "127.0.0.1:1"
    cli.env["CONNECTSW_STORE__URL"] = f"postgresql://connectsw@{where}/nodb?{name}={secret}"
    res = cli("status")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert "percent-encoded" in line and "'&' (%26)" in line
    for piece in PIECES:
        assert piece not in line, line


@pytest.mark.parametrize("reach", ["server", "unreachable"])
def test_an_encoded_secret_query_parameter_reaches_the_server_masked(
    cli: Cli, postgres_server: str, reach: str
) -> None:
    """Percent-encoded, the same password is one value: the server's refusal (no such
    database) or the closed port is the message, and the password stays masked."""
    where = _server(postgres_server) if reach == "server" else "127.0.0.1:1"
    url = f"postgresql://connectsw@{where}/nodb?password=Qzx%26Kvy%3BWmt"
    cli.env["CONNECTSW_STORE__URL"] = url
    res = cli("status")
    assert res.returncode == ExitCode.STORE, res
    line = res.error_line()
    assert f"postgresql://connectsw@{where}/nodb?password=***" in line
    assert ('database "nodb" does not exist' if reach == "server" else "refused") in line
    for piece in PIECES:
        assert piece not in line, line


def test_the_server_refuses_such_a_url_in_one_line(cli: Cli, postgres_server: str) -> None:
    """``connectsw serve`` opens the store the same way: one line, nothing of the secret."""
    where = _server(postgres_server)
    cli.env["CONNECTSW_STORE__URL"] = f"postgresql://connectsw@{where}/nodb?password=Qzx&Kvy;Wmt"
    res = cli("serve", "--port", "0", timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert "percent-encoded" in line
    assert not any(piece in res.stdout + res.stderr for piece in PIECES), res
