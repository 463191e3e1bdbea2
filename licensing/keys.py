"""License keys: ``CSFW-{TIER}-{RANDOM}-{TAG}`` (reference §3.1, made stronger per DESIGN.md).

RANDOM is 80 random bits and TAG the first 80 bits of an HMAC-SHA256 of
``CSFW-{TIER}-{RANDOM}`` under the server's secret, both in RFC 4648 base32
(16 characters each, ``A-Z2-7``). The reference's 4 hex digits of checksum (16
bits) could be guessed; 80 bits cannot. A forged or mistyped key fails the tag
check (constant-time compare) before any store lookup. The store keeps only
:func:`key_digest` of a key; everything else names a license by its public id,
the key without its tag, which cannot be used as a key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.tiers import Tier

PREFIX = "CSFW"
RANDOM_BYTES = 10
"""80 bits: unique among billions of keys."""
TAG_BYTES = 10
"""80 bits of HMAC-SHA256: guessing a valid tag is hopeless."""
_B32_CHARS = 16  # base32 of 10 bytes, no padding
_FORMAT = re.compile(
    rf"{PREFIX}-(?P<tier>{'|'.join(t.value for t in Tier)})"
    rf"-(?P<random>[A-Z2-7]{{{_B32_CHARS}}})-(?P<tag>[A-Z2-7]{{{_B32_CHARS}}})"
)
MIN_SECRET_BYTES = 32
"""The HMAC secret is at least 256 bits."""


@dataclass(frozen=True)
class LicenseKey:
    """A key whose tag has been checked (or that was just issued)."""

    tier: Tier
    random: str
    tag: str

    @property
    def public_id(self) -> str:
        """``CSFW-{TIER}-{RANDOM}``: names the license everywhere; not usable as a key."""
        return f"{PREFIX}-{self.tier.value}-{self.random}"

    @property
    def key(self) -> str:
        """The key itself (a bearer secret: shown once, never stored or logged)."""
        return f"{self.public_id}-{self.tag}"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _tag(public_id: str, secret: bytes) -> str:
    return _b32(hmac.digest(secret, public_id.encode("ascii"), "sha256")[:TAG_BYTES])


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the license secret must be at least {MIN_SECRET_BYTES} bytes")


def new_key(tier: Tier, secret: bytes) -> LicenseKey:
    """A fresh key of ``tier`` tagged under ``secret`` (ValueError if shorter than 32 bytes)."""
    _check_secret(secret)
    random = _b32(secrets.token_bytes(RANDOM_BYTES))
    public_id = f"{PREFIX}-{tier.value}-{random}"
    return LicenseKey(tier, random, _tag(public_id, secret))


def public_part(text: str) -> str | None:
    """The public id of ``text`` if it has a whole key's shape (``CSFW-TIER-RANDOM-TAG``),
    else None: a key pasted where an id is asked for is read as its id, and its secret
    tag is never repeated in a message (trial 8, M1)."""
    match = _FORMAT.fullmatch(text.strip().upper())
    return f"{PREFIX}-{match['tier']}-{match['random']}" if match else None


def check_shape(text: str) -> str:
    """``text`` normalised (upper case, no surrounding spaces) if it has a key's shape.

    The client's quick, offline check (reference §1.1 "validate locally"): no secret,
    so a well-shaped key may still be refused by the server. Raises LicenseRefused
    ``invalid_format`` (the message never repeats the input).
    """
    normal = text.strip().upper()
    if _FORMAT.fullmatch(normal) is None:
        raise LicenseRefused(
            "invalid_format",
            "not a ConnectSW license key (expected CSFW-TIER-XXXXXXXXXXXXXXXX-XXXXXXXXXXXXXXXX)",
        )
    return normal


def parse_key(text: str, secret: bytes) -> LicenseKey:
    """The key in ``text`` if its format and tag are right; no store is consulted.

    Surrounding whitespace is ignored and letters may be lower case (base32 is
    case-insensitive), so a key copied from an e-mail still works.

    Raises:
        LicenseRefused: ``invalid_format`` for anything else: a wrong shape, an
            unknown tier, or a tag that does not match (a forged or mistyped key).
            The message never repeats the input.
    """
    _check_secret(secret)
    match = _FORMAT.fullmatch(check_shape(text))
    assert match is not None
    tier, random, tag = Tier(match["tier"]), match["random"], match["tag"]
    if not hmac.compare_digest(_tag(f"{PREFIX}-{tier.value}-{random}", secret), tag):
        raise LicenseRefused(
            "invalid_format", "this license key is not valid (mistyped, or not issued by us)"
        )
    return LicenseKey(tier, random, tag)


def key_digest(key: LicenseKey) -> str:
    """SHA-256 hex of the key: what the store keeps to find a license by its key."""
    return hashlib.sha256(key.key.encode("ascii")).hexdigest()
