"""Secrets are masked by parsing store URLs and libpq strings (issue 5, fault 8)."""

from __future__ import annotations

import psycopg
import pytest

from connectsw.core.redact import (
    AMBIGUOUS,
    UNPARSABLE,
    ambiguous_userinfo,
    redact,
    redact_message,
)

PASSWORD = "S3cr3tPw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@w@h:5/db", "postgresql://u:***@h:5/db"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a/b@c:d@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:pa?ss#x@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40w@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://h/db?sslmode=require&password=x1",
            "postgresql://h/db?sslmode=require&password=***",
        ),
        (
            "postgresql://u@h/db?sslpassword=x1&sslmode=verify-full",
            "postgresql://u@h/db?sslpassword=***&sslmode=verify-full",
        ),
        (
            "postgresql://h/db?api_token=t&client_secret=s&sslkey=/k&PassWord=p",
            "postgresql://h/db?api_token=***&client_secret=***&sslkey=***&PassWord=***",
        ),
        ("postgresql://u:p@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?application_name=x", "postgresql://h/db?application_name=x"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("", ""),
    ],
)
def test_urls(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        (f"host=db user=app password={PASSWORD}", "user=app password=*** host=db"),
        (f"host=db password='with {PASSWORD} spaces' dbname=x", None),
        (f"host=db sslpassword={PASSWORD} sslmode=require", None),
        (f"host=db password = '{PASSWORD}\\' q'", None),
    ],
)
def test_libpq_keyword_value_strings(conninfo: str, shown: str | None) -> None:
    text = redact(conninfo)
    assert PASSWORD not in text
    assert "***" in text
    assert "host=db" in text
    if shown is not None:
        assert text == shown
    # what is shown is still a connection string libpq reads (with the mask as value)
    assert psycopg.conninfo.conninfo_to_dict(text)["host"] == "db"


@pytest.mark.parametrize(
    "text",
    [
        f"host=db password=se {PASSWORD}",  # unquoted space: libpq refuses it
        f"host=db password='{PASSWORD}",  # unterminated quote
        f"hots=db password={PASSWORD}",  # unknown keyword
        f"u:{PASSWORD}@db/app",  # a URL without its scheme
        f"{PASSWORD}",
        f"1nvalid scheme://u:{PASSWORD}@h",
    ],
)
def test_unparsable_strings_are_never_echoed(text: str) -> None:
    assert redact(text) == UNPARSABLE


def test_message_about_an_url_loses_its_secrets() -> None:
    url = f"postgresql://u:{PASSWORD}%2Fx@h/db?sslpassword=k%2By"
    message = f'connection to "{url}" failed: password "{PASSWORD}/x" rejected; k+y'
    shown = redact_message(message, url)
    assert PASSWORD not in shown
    assert "k+y" not in shown and "k%2By" not in shown
    assert "postgresql://u:***@h/db?sslpassword=***" in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@ss#w@h/db",
        "postgresql://u:pa/ss@h/db",
        "postgresql://u:pa#ss@h/db",
        "postgresql://u:p%zz@h/db",
        "postgresql://u:p%4@h/db",
        "postgresql://h/db?application_name=a@b",
    ],
)
def test_a_url_libpq_may_split_elsewhere_is_never_quoted(url: str) -> None:
    assert ambiguous_userinfo(url)
    assert redact_message(f"could not translate host name {url[20:]}", url) == AMBIGUOUS


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p%40ss%23w@h/db", "postgresql://u:p:w!$&'()*+,;=@h/db?x=1", "host=h"],
)
def test_an_encoded_url_is_not_ambiguous(url: str) -> None:
    assert not ambiguous_userinfo(url)


def test_message_about_an_unparsable_string_is_replaced() -> None:
    conninfo = f"host=db password=se cret{PASSWORD}"
    with pytest.raises(psycopg.ProgrammingError) as info:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    assert PASSWORD in str(info.value)  # libpq quotes the fragment it stumbled on
    shown = redact_message(str(info.value), conninfo)
    assert PASSWORD not in shown
    assert "could not be parsed" in shown


def test_message_about_a_keyword_value_string() -> None:
    conninfo = f"host=db password='{PASSWORD}'"
    assert redact_message(f"bad password {PASSWORD}", conninfo) == "bad password ***"


def test_old_regex_cases_now_masked() -> None:
    """The cases issue 5 found leaking through core/stores/base.py's regex."""
    for text in (
        f"host=db.example password={PASSWORD} dbname=app",
        f"postgresql://app@db/app?sslpassword={PASSWORD}",
        f"postgresql://app:{PASSWORD[:4]}/{PASSWORD[4:]}@db/app",
        f"postgresql://app:{PASSWORD[:4]}@{PASSWORD[4:]}@db/app",
    ):
        shown = redact(text)
        assert PASSWORD[:4] not in shown and PASSWORD[4:] not in shown, shown
