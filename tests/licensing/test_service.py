"""Issuing, changing and validating licenses (reference §3.1 steps 1-4) on a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.errors import InvalidState, NotFound
from connectsw.core.stores import open_store
from connectsw.licensing.errors import InvalidLicenseRequest, LicenseRefused
from connectsw.licensing.keys import new_key
from connectsw.licensing.models import LicenseStatus
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier

SECRET = b"x" * 32


@pytest.fixture
def licenses(settings: Settings) -> Licenses:
    return Licenses(open_store(settings.store_url), SECRET, DEFAULT_TIERS)


def refused(licenses: Licenses, key: str, now: datetime | None = None) -> str:
    with pytest.raises(LicenseRefused) as err:
        licenses.validate(key, now)
    assert key not in str(err.value)
    return err.value.reason


def test_an_issued_key_validates_and_the_store_keeps_no_key(licenses: Licenses) -> None:
    record, key = licenses.issue(Tier.PRO, "a@example.com")
    assert licenses.validate(key) == record
    assert record.expires_at is not None
    assert record.expires_at - record.issued_at == timedelta(days=365)
    assert key.rsplit("-", 1)[1] not in repr(licenses.list())


def test_a_forged_key_is_refused_before_any_store_access() -> None:
    # No store at all: any access would raise AttributeError, not LicenseRefused.
    no_store = Licenses(None, SECRET, DEFAULT_TIERS)  # type: ignore[arg-type]
    forged = new_key(Tier.ENTERPRISE, b"y" * 32).key  # tagged with another secret
    assert refused(no_store, forged) == "invalid_format"
    assert refused(no_store, forged[:-1] + ("A" if forged[-1] != "A" else "B")) == "invalid_format"


def test_the_pipeline_order_not_found_expired_suspended_revoked(licenses: Licenses) -> None:
    unknown = new_key(Tier.PRO, SECRET).key  # well-formed, never issued
    assert refused(licenses, unknown) == "not_found"
    record, key = licenses.issue(Tier.FREE, "b@example.com", days=1)
    later = datetime.now(UTC) + timedelta(days=2)
    assert refused(licenses, key, later) == "expired"
    licenses.change(record.id, LicenseStatus.SUSPENDED, "shared with a team")
    assert refused(licenses, key) == "suspended"
    assert refused(licenses, key, later) == "expired"  # expiry is checked first
    licenses.change(record.id, LicenseStatus.ACTIVE)
    assert licenses.validate(key).status is LicenseStatus.ACTIVE
    licenses.change(record.id, LicenseStatus.REVOKED)
    assert refused(licenses, key) == "revoked"
    with pytest.raises(InvalidState):
        licenses.change(record.id, LicenseStatus.ACTIVE)


def test_seats_and_validity_can_be_set_per_license(licenses: Licenses) -> None:
    record, _ = licenses.issue(Tier.BUSINESS, "c@example.com", users=25, days=30)
    assert record.entitlements.max_users == 25
    assert record.entitlements.concurrent_sessions == 25
    assert record.entitlements.requests_per_hour == DEFAULT_TIERS[Tier.BUSINESS].requests_per_hour
    assert record.expires_at is not None
    assert record.expires_at - record.issued_at == timedelta(days=30)


@pytest.mark.parametrize(
    ("email", "users", "days", "what"),
    [
        ("not-an-address", None, None, "--email"),
        ("a@b", None, None, "--email"),
        ("a@example.com", 0, None, "--users"),
        ("a@example.com", None, 0, "--days"),
        ("a@example.com", None, 10**9, "--days"),
    ],
)
def test_bad_issue_requests_are_refused(
    licenses: Licenses, email: str, users: int | None, days: int | None, what: str
) -> None:
    with pytest.raises(InvalidLicenseRequest, match=what):
        licenses.issue(Tier.PRO, email, users=users, days=days)
    assert licenses.list() == []


def test_unknown_licenses_are_not_found(licenses: Licenses) -> None:
    with pytest.raises(NotFound):
        licenses.get("CSFW-PRO-AAAAAAAAAAAAAAAA")
    with pytest.raises(NotFound):
        licenses.change("CSFW-PRO-AAAAAAAAAAAAAAAA", LicenseStatus.SUSPENDED, "x")


def test_a_certificate_is_only_for_an_active_license(licenses: Licenses) -> None:
    from connectsw.licensing.certificates import new_signing_key, verify_certificate

    key = new_signing_key()
    record, _ = licenses.issue(Tier.PRO, "d@example.com")
    cert = verify_certificate(licenses.certificate(record.id, key), key.public_key())
    assert cert.license_id == record.id and cert.expires_at == record.expires_at
    licenses.change(record.id, LicenseStatus.SUSPENDED, "unpaid")
    with pytest.raises(LicenseRefused) as err:
        licenses.certificate(record.id, key)
    assert err.value.reason == "suspended"
