"""No part of a store URL's password reaches the terminal (found by the new-user trial).

``postgresql://u:p@ss#w@127.0.0.1:1/db`` (unencoded) made libpq read the password
``p`` and the host ``ss#w@127.0.0.1``, and its message quoted ``ss#w``. A URL that
libpq may split elsewhere than our redaction does is refused before libpq sees it.
"""

from __future__ import annotations

import re

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
