"""Signed license certificates, verifiable offline with the public key alone (Ed25519).

The reference's "validate locally, quick fail": the server signs what a license
entitles to; the CLI and local agents check it without a network. A certificate
is one line of text::

    csfw-cert-v1.<payload>.<signature>

``payload`` is base64url (no padding) of canonical JSON (sorted keys, no spaces)
with ``license_id``, ``tier``, ``entitlements``, ``issued_at`` and ``expires_at``
(ISO 8601 UTC, or null: no expiry); ``signature`` is base64url of the Ed25519
signature over ``csfw-cert-v1.<payload>`` (so the version is signed too).
Verifying costs ~0.2 ms: it is for offline checks, never a per-request check on
the server (DESIGN.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.tiers import Entitlements, Tier

VERSION = "csfw-cert-v1"
MAX_CERTIFICATE_CHARS = 16_384


@dataclass(frozen=True)
class Certificate:
    """What a certificate states (times are timezone-aware UTC)."""

    license_id: str
    tier: Tier
    entitlements: Entitlements
    issued_at: datetime
    expires_at: datetime | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(cert: Certificate) -> bytes:
    body: dict[str, Any] = {
        "license_id": cert.license_id,
        "tier": cert.tier.value,
        "entitlements": cert.entitlements.model_dump(mode="json"),
        "issued_at": cert.issued_at.astimezone(UTC).isoformat(),
        "expires_at": cert.expires_at.astimezone(UTC).isoformat() if cert.expires_at else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_certificate(cert: Certificate, key: Ed25519PrivateKey) -> str:
    """The certificate as one line of text, signed with the server's private key."""
    signed = f"{VERSION}.{_b64(_payload(cert))}"
    return f"{signed}.{_b64(key.sign(signed.encode('ascii')))}"


def verify_certificate(
    text: str, public_key: Ed25519PublicKey, now: datetime | None = None
) -> Certificate:
    """The certificate in ``text`` if its signature holds and it has not expired.

    Raises:
        LicenseRefused: ``malformed_certificate`` (not a certificate of this version,
            or unreadable), ``tampered_certificate`` (the signature does not match
            the content, or it was signed by another key), ``expired`` (its
            ``expires_at`` is before ``now``, default the current time).
    """
    text = text.strip()
    parts = text.split(".")
    if len(text) > MAX_CERTIFICATE_CHARS or len(parts) != 3 or parts[0] != VERSION:
        raise LicenseRefused("malformed_certificate", f"not a {VERSION} license certificate")
    try:
        payload, signature = _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise LicenseRefused("malformed_certificate", "the certificate is not readable") from None
    try:
        public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise LicenseRefused(
            "tampered_certificate",
            "the certificate's signature does not match (altered, or not signed by this server)",
        ) from None
    cert = _certificate(payload)
    now = now or datetime.now(UTC)
    if cert.expires_at is not None and cert.expires_at <= now:
        raise LicenseRefused(
            "expired", f"license {cert.license_id} expired on {cert.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return cert


def _certificate(payload: bytes) -> Certificate:
    try:
        body = json.loads(payload)
        expires = body["expires_at"]
        return Certificate(
            license_id=str(body["license_id"]),
            tier=Tier(body["tier"]),
            entitlements=Entitlements.model_validate(body["entitlements"]),
            issued_at=_utc(body["issued_at"]),
            expires_at=_utc(expires) if expires is not None else None,
        )
    except (ValueError, KeyError, TypeError):  # signed by us, yet unreadable: another version
        raise LicenseRefused(
            "malformed_certificate", "the certificate's content is not readable"
        ) from None


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive time")
    return value.astimezone(UTC)


def certificate_dict(cert: Certificate) -> dict[str, Any]:
    """JSON-ready view of a certificate (``--json`` output)."""
    out = asdict(cert)
    out["tier"] = cert.tier.value
    out["entitlements"] = cert.entitlements.model_dump(mode="json")
    out["issued_at"] = cert.issued_at.isoformat()
    out["expires_at"] = cert.expires_at.isoformat() if cert.expires_at else None
    return out


# -- signing keys ------------------------------------------------------------------------


def new_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key for signing certificates."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (keep the file mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the key (what clients need to verify)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem``; ValueError if it is not one."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in ``pem``; ValueError if it is not one."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
