"""License keys: format, HMAC tag (forged and mistyped keys fail before any lookup), ids."""

from __future__ import annotations

import re

import pytest

from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.keys import (
    RANDOM_BYTES,
    TAG_BYTES,
    key_digest,
    new_key,
    parse_key,
)
from connectsw.licensing.tiers import Tier

SECRET = b"s" * 32
OTHER = b"o" * 32


def test_an_issued_key_has_the_reference_shape_and_parses_back() -> None:
    key = new_key(Tier.PRO, SECRET)
    assert re.fullmatch(r"CSFW-PRO-[A-Z2-7]{16}-[A-Z2-7]{16}", key.key)
    assert parse_key(key.key, SECRET) == key
    assert parse_key(f"  {key.key.lower()}\n", SECRET) == key  # pasted from an e-mail


def test_random_part_and_tag_are_at_least_64_bits() -> None:
    assert RANDOM_BYTES * 8 >= 64 and TAG_BYTES * 8 >= 64
    keys = {new_key(Tier.FREE, SECRET).random for _ in range(5000)}
    assert len(keys) == 5000


def test_the_public_id_is_the_key_without_its_tag_and_is_not_a_key() -> None:
    key = new_key(Tier.BUSINESS, SECRET)
    assert key.key == f"{key.public_id}-{key.tag}"
    assert key.tag not in key.public_id
    with pytest.raises(LicenseRefused):
        parse_key(key.public_id, SECRET)


@pytest.mark.parametrize("tier", list(Tier))
def test_every_tier(tier: Tier) -> None:
    assert parse_key(new_key(tier, SECRET).key, SECRET).tier is tier


def mistypes(key: str) -> list[str]:
    """Every key one character away from ``key`` in its random part or tag."""
    out = []
    for i, ch in enumerate(key):
        if ch == "-" or i < key.index("-", 5):  # the prefix and tier are checked by shape
            continue
        other = "A" if ch != "A" else "B"
        out.append(key[:i] + other + key[i + 1 :])
    return out


def test_every_single_character_mistype_is_refused_as_invalid_format() -> None:
    key = new_key(Tier.PRO, SECRET).key
    typos = mistypes(key)
    assert len(typos) == 32
    for typo in typos:
        with pytest.raises(LicenseRefused) as err:
            parse_key(typo, SECRET)
        assert err.value.reason == "invalid_format"
        assert typo not in str(err.value)


def test_a_key_forged_without_the_secret_is_refused() -> None:
    forged = new_key(Tier.ENTERPRISE, OTHER).key
    with pytest.raises(LicenseRefused) as err:
        parse_key(forged, SECRET)
    assert err.value.reason == "invalid_format"


def test_changing_the_tier_of_a_real_key_is_refused() -> None:
    key = new_key(Tier.FREE, SECRET)
    upgraded = key.key.replace("CSFW-FREE-", "CSFW-ENTERPRISE-")
    with pytest.raises(LicenseRefused):
        parse_key(upgraded, SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CSFW-PRO-A7F2E9D1-X8K3",  # the reference's example: 4 characters of checksum
        "CSFW-GOLD-AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAA",
        "CSFW-PRO-AAAAAAAAAAAAAAA1-AAAAAAAAAAAAAAAA",  # 1 is not base32
        "CSFW-PRO-AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAA-X",
        "XXXX-PRO-AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAA",
        "CSFW-PRO-AAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAA",
        "CSFW-PRO-" + "A" * 10_000,
    ],
)
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(LicenseRefused) as err:
        parse_key(text, SECRET)
    assert err.value.reason == "invalid_format"


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        new_key(Tier.PRO, b"short")


def test_the_digest_is_stable_and_holds_no_part_of_the_key() -> None:
    key = new_key(Tier.PRO, SECRET)
    digest = key_digest(key)
    assert digest == key_digest(parse_key(key.key, SECRET))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key.random not in digest.upper() and key.tag not in digest.upper()
