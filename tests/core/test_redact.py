"""Secrets are masked by parsing store URLs and libpq strings (issue 5, fault 8)."""

from __future__ import annotations

import psycopg
import pytest

from connectsw.core.redact import (
    AMBIGUOUS,
    UNPARSABLE,
    ambiguous,
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


# -- masking by parts: libpq cuts a secret query parameter at "&" ------------------------


def _libpq_message(url: str) -> str:
    """libpq's own message for ``url`` (no server is asked: the URL does not parse)."""
    with pytest.raises(psycopg.Error) as info:
        psycopg.connect(url, connect_timeout=1)
    return str(info.value)


@pytest.mark.parametrize(
    ("query", "quoted"),
    [
        ("password=Qzx&Kvy;Wmt", "Kvy;Wmt"),  # missing key/value separator "=" ...: "Kvy;Wmt"
        ("sslpassword=Qzx&Kvy=Wmt", "Kvy"),  # invalid URI query parameter: "Kvy"
        ("password=Qzx&Kvy+Wmt&sslmode=disable", "Kvy+Wmt"),
    ],
)
def test_pieces_of_a_secret_query_parameter_are_masked(query: str, quoted: str) -> None:
    url = f"postgresql://u@127.0.0.1:1/db?{query}"
    message = _libpq_message(url)
    assert quoted in message  # what leaked: libpq's message quotes a piece of the secret
    assert ambiguous(url) and not ambiguous_userinfo(url)
    assert redact_message(message, url) == AMBIGUOUS
    shown = redact(url)
    assert shown.startswith("postgresql://u@127.0.0.1:1/db?") and "***" in shown
    for piece in ("Qzx", "Kvy", "Wmt"):
        assert piece not in shown, shown


def test_a_piece_of_a_secret_is_left_out_of_the_shown_url() -> None:
    """Where a URL is only shown (a bench's header, a worker's message), the pieces of
    the secret are masked with it; a known parameter after them is kept."""
    url = "postgresql://u@h/db?password=Qzx&Kvy;Wmt&sslmode=require"
    assert redact(url) == "postgresql://u@h/db?password=***&sslmode=require"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db?password=Qz%26Kx&sslmode=require",
        "postgresql://u@h/db?sslmode=require&password=x1&application_name=a",
        "postgresql://u@h/db?password=x1&ssl=true",
        "postgresql://u@h/db?options=-csearch_path%3Dx",
    ],
)
def test_well_formed_queries_are_not_ambiguous(url: str) -> None:
    assert not ambiguous(url)
    assert "***" in redact(url) or "password" not in url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h:5/db?password=Qzx;Kvy@Wmt&sslmode=disable",
        "postgresql://u@/db?host=h&password=Qzx Kvy@Wmt&port=5",
        "postgresql://u@h/db?sslpassword=Qzx@Kvy/Wmt",
    ],
)
def test_a_at_sign_in_a_query_value_hides_the_whole_url(url: str) -> None:
    """The last ``@`` is in the query: the "user name" holds the host and the query,
    and where the secret ends cannot be told, so nothing after the scheme is shown."""
    assert redact(url) == "postgresql://***"
    assert ambiguous(url)
