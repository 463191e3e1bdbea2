"""Offline license certificates: signed by the server, verified with the public key alone."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from connectsw.licensing.certificates import (
    Certificate,
    certificate_dict,
    load_private_key,
    load_public_key,
    new_signing_key,
    private_key_pem,
    public_key_pem,
    sign_certificate,
    verify_certificate,
)
from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.tiers import Entitlements, Tier

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def cert(expires: datetime | None = NOW + timedelta(days=30)) -> Certificate:
    return Certificate(
        license_id="CSFW-PRO-ABCDEFGHIJKLMNOP",
        tier=Tier.PRO,
        entitlements=Entitlements(max_users=3, requests_per_hour=5000, features=("api",)),
        issued_at=NOW,
        expires_at=expires,
    )


def test_a_signed_certificate_verifies_with_the_public_key_alone() -> None:
    key = new_signing_key()
    text = sign_certificate(cert(), key)
    public = load_public_key(public_key_pem(key))  # what a client holds
    assert verify_certificate(text, public, now=NOW) == cert()
    assert verify_certificate(sign_certificate(cert(None), key), public, now=NOW).expires_at is None


def test_an_expired_certificate_is_refused() -> None:
    key = new_signing_key()
    text = sign_certificate(cert(NOW - timedelta(seconds=1)), key)
    with pytest.raises(LicenseRefused) as err:
        verify_certificate(text, key.public_key(), now=NOW)
    assert err.value.reason == "expired"
    assert "CSFW-PRO-ABCDEFGHIJKLMNOP" in str(err.value)


def test_a_tampered_payload_is_refused() -> None:
    key = new_signing_key()
    version, payload, signature = sign_certificate(cert(), key).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["tier"] = "ENTERPRISE"
    body["entitlements"]["max_users"] = 1000
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with pytest.raises(LicenseRefused) as err:
        verify_certificate(f"{version}.{forged}.{signature}", key.public_key(), now=NOW)
    assert err.value.reason == "tampered_certificate"


def test_a_tampered_signature_or_another_key_is_refused() -> None:
    key = new_signing_key()
    text = sign_certificate(cert(), key)
    flipped = text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]
    for bad, public in [(flipped, key.public_key()), (text, new_signing_key().public_key())]:
        with pytest.raises(LicenseRefused) as err:
            verify_certificate(bad, public, now=NOW)
        assert err.value.reason == "tampered_certificate"


@pytest.mark.parametrize(
    "text",
    ["", "hello", "csfw-cert-v2.e30.AAAA", "csfw-cert-v1.e30", "csfw-cert-v1.!!!.@@@", "x" * 20000],
)
def test_malformed_certificates_are_refused(text: str) -> None:
    with pytest.raises(LicenseRefused) as err:
        verify_certificate(text, new_signing_key().public_key(), now=NOW)
    assert err.value.reason in {"malformed_certificate", "tampered_certificate"}


def test_signed_but_unreadable_content_is_malformed() -> None:
    key = new_signing_key()
    signed = "csfw-cert-v1." + base64.urlsafe_b64encode(b'{"tier":"GOLD"}').decode().rstrip("=")
    sig = base64.urlsafe_b64encode(key.sign(signed.encode())).decode().rstrip("=")
    with pytest.raises(LicenseRefused) as err:
        verify_certificate(f"{signed}.{sig}", key.public_key(), now=NOW)
    assert err.value.reason == "malformed_certificate"


def test_keys_round_trip_through_pem_and_the_wrong_kind_is_refused() -> None:
    key = new_signing_key()
    again = load_private_key(private_key_pem(key))
    assert public_key_pem(again) == public_key_pem(key)
    with pytest.raises(ValueError):
        load_public_key(private_key_pem(key))


def test_json_view() -> None:
    view = certificate_dict(cert())
    assert view["tier"] == "PRO" and view["entitlements"]["max_users"] == 3
    assert view["expires_at"] == "2026-12-29T12:00:00+00:00"
