"""Store URLs and connection strings without their secrets, for messages and logs.

Secrets are found by parsing, never by a pattern over the text:

- a URL (``scheme://...``) is split as RFC 3986 does, except that the userinfo
  ends at the *last* ``@`` of the string, as users write passwords with ``/``,
  ``@``, ``:``, ``?`` or ``#`` unescaped (libpq would misread such a URL, but the
  message about it must not show the password). Everything after the first ``:``
  of the userinfo is the password. Query parameters are split as
  :func:`urllib.parse.parse_qsl` does;
- a libpq keyword/value string (``host=db password='a b'``) is parsed by libpq
  itself (:func:`psycopg.conninfo.conninfo_to_dict`) and written back with
  :func:`psycopg.conninfo.make_conninfo`;
- anything else, or a string either parser refuses, becomes :data:`UNPARSABLE`:
  a string we cannot parse is never echoed, since we cannot tell where its secret is.

Where the two parsers could disagree, the URL is refused instead (:func:`ambiguous`):
libpq ends the userinfo at the *first* ``@`` and the host at a ``/``, so with
``postgresql://u:p@ss#w@h/db`` it reads the password ``p`` and the host ``ss#w@h``,
and its messages then quote a piece of the password that no masking of ``p@ss#w``
finds. A store URL may therefore hold one ``@``, and its user name and password no
``/ ? # [ ]``, spaces or stray ``%``: they are percent-encoded (``%40`` for ``@``).
Likewise in the query: libpq splits ``?password=Qz&Kx;Vw`` at the ``&`` and quotes
the piece ``Kx;Vw`` ("missing key/value separator"), so a secret parameter may hold
no ``&`` or ``=``, and each part after it must be ``NAME=VALUE`` with a name libpq
knows (:func:`ambiguous_query`).

Secrets are masked by parts: a query part anywhere after a secret parameter that is
not ``NAME=VALUE`` with a libpq parameter name is taken as a piece of a secret (its
text, its name and its value are masked, and :func:`redact` leaves it out).

A parameter is secret when its name (any case) contains ``password``, ``passwd``,
``secret``, ``token``, ``key`` or ``sig`` (``password``, ``sslpassword``, ``sslkey``,
``api_key``, ``sig`` and ``signature`` of a signed URL...).
Hiding too much is the safe failure: a ``@`` in a query value makes the text before
it count as userinfo.
"""

from __future__ import annotations

import base64
import json
import re
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"
"""What a secret value is replaced by."""

UNPARSABLE = "<store URL hidden: could not be parsed>"
"""The whole text shown instead of a string that cannot be parsed."""

SECRET_WORDS = ("password", "passwd", "secret", "token", "key", "sig")
"""A parameter whose name contains one of these (any case) is secret."""


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or libpq keyword named ``name`` holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact(url_or_conninfo: str) -> str:
    """``url_or_conninfo`` with every secret value replaced by ``***``.

    ``postgresql://u:p/w@h/db?sslpassword=x`` -> ``postgresql://u:***@h/db?sslpassword=***``;
    ``host=db password='a b'`` -> ``host=db password=***``; ``""`` -> ``""``; an
    unparsable string -> :data:`UNPARSABLE`. Never raises.
    """
    text = url_or_conninfo.strip()
    if not text:
        return ""
    try:
        url = _split_url(text)
        if url is not None:
            return url.masked()
        return _redact_conninfo(text)
    except Exception:  # any parser failure: hide it all, never echo it
        return UNPARSABLE


AMBIGUOUS = (
    "the user name or password in the store URL (or a secret query parameter such as"
    " password= or sslpassword=) has characters that must be percent-encoded: '@' (%40),"
    " '#' (%23), '/' (%2F), '?' (%3F), '&' (%26), '=' (%3D), '[' (%5B), ']' (%5D),"
    " '%' (%25) or spaces (%20); or keep the password out of the URL (PGPASSWORD or"
    " ~/.pgpass). The URL is not shown"
)
"""Why a URL libpq may split elsewhere than we do is refused (it is not quoted)."""

_USERINFO_DELIMITERS = frozenset("@/?#[]")
_HEX = frozenset("0123456789abcdefABCDEF")


def ambiguous_userinfo(url: str) -> bool:
    """Whether libpq could read another user name, password or host in ``url`` than we do.

    True for a ``scheme://`` URL with more than one ``@``, or whose user name or
    password (up to its ``@``) holds ``/ ? # [ ]``, whitespace or a ``%`` that does
    not start a ``%XX`` escape. False for anything else (libpq keyword/value strings
    are parsed by libpq itself). Never raises.
    """
    parsed = _split_url(url.strip())
    if parsed is None or parsed.userinfo is None:
        return False
    userinfo = parsed.userinfo  # up to the last "@": any other "@" is in it
    if any(c in _USERINFO_DELIMITERS or c.isspace() for c in userinfo):
        return True
    escapes = userinfo.split("%")[1:]
    return any(len(e) < 2 or any(h not in _HEX for h in e[:2]) for e in escapes)


def ambiguous_query(url: str) -> bool:
    """Whether libpq could cut a secret query parameter of ``url`` into pieces it quotes.

    True for a ``scheme://`` URL whose secret parameter's value holds ``=``, where a
    part after a secret parameter is not ``NAME=VALUE`` with a libpq parameter name
    (a ``&`` inside the secret: ``?password=Qz&Kx;Vw``), or with a secret parameter
    and a ``#`` (libpq reads it as part of a value). Never raises.
    """
    try:
        parsed = _split_url(url.strip())
        if parsed is None:
            return False
        secrets = parsed.secret_params()
        # libpq knows no fragment: "password=Qz#Kx&Vw" is one value up to its "&".
        return any(continued or "=" in value for _, value, continued in secrets) or bool(
            secrets and parsed.has_fragment
        )
    except Exception:  # cannot tell: refuse rather than let libpq quote it
        return True


def ambiguous(url: str) -> bool:
    """:func:`ambiguous_userinfo` or :func:`ambiguous_query`: libpq may read another
    password out of ``url`` than the one masked, and quote pieces of it."""
    return ambiguous_userinfo(url) or ambiguous_query(url)


MIN_ENCODED_SECRET = 8
"""A secret shorter than this is masked raw and percent-encoded only: the inside of
its base64 form would be too short to tell from other text."""


def secret_forms(secret: str) -> list[str]:
    """The ways a server or library may echo ``secret``, longest first: raw;
    percent-encoded as a URL path, a query value or a form (``+`` for a space);
    JSON-escaped (``\\/``, ``\\uXXXX``); and for a secret of at least
    :data:`MIN_ENCODED_SECRET` characters, its base64 and base64url text at each of
    the three alignments it can have inside a longer encoded string (e.g. HTTP Basic
    ``user:KEY``), without the edge characters that depend on its neighbours.
    """
    if not secret:
        return []
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
    }
    if len(secret) >= MIN_ENCODED_SECRET:
        data = secret.encode("utf-8")
        for pad in range(3):
            text = base64.b64encode(b"\0" * pad + data).decode("ascii")
            bits = 8 * (pad + len(data))
            first, last = -(-8 * pad // 6), bits // 6  # characters wholly of the secret
            inner = text[first:last]
            forms.update((inner, inner.translate(str.maketrans("+/", "-_"))))
    return sorted((f for f in forms if f), key=len, reverse=True)


def mask_secret(text: str, secret: str | None, mask: str = MASK) -> str:
    """``text`` with every form of ``secret`` (:func:`secret_forms`) replaced by
    ``mask``; percent-encoded forms in either case of their hex digits."""
    if not secret:
        return text
    for form in secret_forms(secret):
        flags = re.IGNORECASE if "%" in form else 0
        text = re.sub(re.escape(form), lambda _m: mask, text, flags=flags)
    return text


def url_secrets(url_or_conninfo: str) -> list[str]:
    """The secret values of ``url_or_conninfo`` as they may appear in text about it (raw
    and percent-decoded): its password and each secret query parameter's value (this
    module's one rule, :func:`is_secret_name`). ``[]`` for none or an unparsable string
    (a caller that shows such a string must use :func:`redact`). Never raises."""
    return _secret_values(url_or_conninfo) or []


def redact_message(message: str, url_or_conninfo: str) -> str:
    """``message`` (e.g. a driver's error about that URL) without the URL's secrets.

    The URL itself and each secret value parsed from it (raw and percent-decoded)
    are replaced. If the URL cannot be parsed, the message may quote any part of it
    (libpq says ``missing "=" after "cret"``), so a fixed text is returned instead;
    likewise :data:`AMBIGUOUS` if libpq may have split it elsewhere than we do
    (:func:`ambiguous`).
    """
    secrets = _secret_values(url_or_conninfo)
    if secrets is None:
        return "the store URL could not be parsed (it is not shown: it may hold a password)"
    if ambiguous(url_or_conninfo):
        return AMBIGUOUS
    shown = redact(url_or_conninfo)
    if url_or_conninfo.strip():
        message = message.replace(url_or_conninfo.strip(), shown)
    for secret in sorted(secrets, key=len, reverse=True):
        message = mask_secret(message, secret)
    return message


class HiddenUrl(str):
    """A store URL handed to Dask (a ``client.run`` argument): the URL itself, whose
    ``repr`` is :func:`redact`'s. Dask's worker logs quote the arguments of a call that
    failed by their ``repr`` ("Run Failed ... args: ..."), trial 8b F1."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact(str.__str__(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (HiddenUrl, (str.__str__(self),))


def masked_repr(obj: Any, urls: tuple[str, ...]) -> str:
    """``Name(field=value, ...)`` of a dataclass ``obj``, with each field named in
    ``urls`` shown by :func:`redact`: for objects Dask may print (its "Compute Failed"
    log quotes a task's callable by its ``repr``, trial 8b F1)."""
    parts = []
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        if name in urls and isinstance(value, str):
            value = redact(value)
        parts.append(f"{name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


# -- URLs -------------------------------------------------------------------------


class _Url:
    """A URL cut into the parts that can hold secrets."""

    def __init__(self, scheme: str, rest: str) -> None:
        self.scheme = scheme
        at = rest.rfind("@")
        self.userinfo: str | None = rest[:at] if at >= 0 else None
        after = rest[at + 1 :]
        before_fragment, hash_sign, self.fragment = after.partition("#")
        self.hostpath, question, query = before_fragment.partition("?")
        self.has_fragment = bool(hash_sign)
        self.query: list[str] | None = query.split("&") if question else None

    def user_and_password(self) -> tuple[str, str | None]:
        user, colon, password = (self.userinfo or "").partition(":")
        return user, password if colon else None

    def secret_params(self) -> list[tuple[int, str, bool]]:
        """(index, raw value, continued) of each secret query parameter and each piece
        of one: anywhere after a secret parameter, a part that is not ``NAME=VALUE``
        with a libpq parameter name is a piece of a secret (``continued`` True; its
        whole text is the value), since libpq would read a ``&`` in it as a separator."""
        found: list[tuple[int, str, bool]] = []
        after_secret = False
        for i, part in enumerate(self.query or []):
            name, equals, value = part.partition("=")
            if is_secret_name(unquote_plus(name)):
                found.append((i, value, False))
                after_secret = True
            elif after_secret and not (equals and "=" not in value and _is_keyword(name)):
                found.append((i, part, True))
        return found

    def masked(self) -> str:
        out = f"{self.scheme}://"
        if self.userinfo is not None:
            user, password = self.user_and_password()
            if any(c in _USERINFO_DELIMITERS for c in user):
                # The "user name" swallowed a host, path or query (a "@" in a query
                # value): where the secrets are cannot be told, so nothing is shown.
                return out + MASK
            out += f"{user}:{MASK}@" if password is not None else f"{user}@"
        out += self.hostpath
        if self.query is not None:
            parts: list[str | None] = list(self.query)
            for i, _, continued in self.secret_params():
                # A piece of the secret before it is left out: its mask covers it.
                parts[i] = None if continued else self.query[i].partition("=")[0] + "=" + MASK
            out += "?" + "&".join(p for p in parts if p is not None)
        if self.has_fragment:
            out += "#" + (MASK if self.fragment else "")
        return out


def _split_url(text: str) -> _Url | None:
    """A :class:`_Url` if ``text`` starts with ``scheme://``, else None."""
    scheme, sep, rest = text.partition("://")
    valid = (
        bool(sep)
        and bool(scheme)
        and scheme[0].isascii()
        and scheme[0].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "+.-") for c in scheme)
    )
    return _Url(scheme, rest) if valid else None


@lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    """The parameter names libpq knows (its own list), and ``ssl`` (a URI alias)."""
    try:
        from psycopg import pq

        names = {o.keyword.decode() for o in pq.Conninfo.get_defaults()}
    except Exception:  # no libpq: every part after a secret counts as a piece of it
        return frozenset()
    return frozenset(names | {"ssl"})


def _is_keyword(raw_name: str) -> bool:
    return unquote(raw_name) in _libpq_keywords()


# -- libpq keyword/value strings -------------------------------------------------------


def _conninfo(text: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict  # libpq's own parser

    if "=" not in text:
        raise ValueError("not a keyword/value string")
    return {k: str(v) for k, v in conninfo_to_dict(text).items()}


def _redact_conninfo(text: str) -> str:
    from psycopg.conninfo import make_conninfo

    params = _conninfo(text)
    masked = {k: (MASK if is_secret_name(k) else v) for k, v in params.items()}
    return make_conninfo("", **masked)


def _secret_values(text: str) -> list[str] | None:
    """The secret values in ``text`` (raw and decoded), or None if it cannot be parsed."""
    text = text.strip()
    if not text:
        return []
    try:
        url = _split_url(text)
        if url is None:
            params = _conninfo(text)
            return [v for k, v in params.items() if is_secret_name(k) and v]
        raw: list[str] = []
        _, password = url.user_and_password()
        if password:
            raw.append(password)
        for _, value, continued in url.secret_params():
            raw.append(value)
            if continued:  # libpq quotes a piece's text, or its name alone
                raw.extend(value.partition("=")[::2])
        if url.fragment:  # libpq reads it as part of the value before it: its pieces too
            raw.append(url.fragment)
            raw.extend(re.split(r"[&=]", url.fragment))
        raw = [v for v in raw if v]
        values = set(raw) | {unquote(v) for v in raw} | {unquote_plus(v) for v in raw}
        return [v for v in values if v]
    except Exception:  # unparsable: the caller must hide everything
        return None
