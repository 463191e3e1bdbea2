"""Anti-piracy response tiers (reference §3.3): effects, idempotence, reversal, no keys."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.errors import InvalidState
from connectsw.core.stores import Store, open_store
from connectsw.licensing.models import License, LicenseStatus
from connectsw.licensing.responses import (
    DEFAULT_MESSAGE,
    FRIENDLY_MESSAGES,
    ActionOutcome,
    ResponseAction,
    apply,
)
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier

SECRET = b"s" * 32


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store_url)
    yield store
    store.close()


@pytest.fixture
def licenses(store: Store) -> Licenses:
    return Licenses(store, SECRET, dict(DEFAULT_TIERS))


def issue(licenses: Licenses, tier: Tier = Tier.PRO) -> tuple[License, str]:
    return licenses.issue(tier, "owner@example.com")


def action(record: License, tier: int = 1, **changes: Any) -> ResponseAction:
    fields: dict[str, Any] = {
        "license_id": record.id,
        "tier": tier,
        "detection_type": "multi_ip",
        "confidence": 0.8,
        "evidence": {"ips_24h": 14, "threshold": 3, "countries": ["DE", "BR", "VN"]},
        "finding_key": f"{record.id}/multi_ip/2026-03-01T00:00Z",
        **changes,
    }
    return ResponseAction(**fields)


def run(a: ResponseAction, licenses: Licenses, store: Store, settings: Settings) -> ActionOutcome:
    return apply(a, licenses=licenses, store=store, settings=settings)


@pytest.mark.parametrize(
    ("detection", "message"),
    [
        ("multi_ip", FRIENDLY_MESSAGES["multi_ip"]),
        ("concurrent_sessions", FRIENDLY_MESSAGES["concurrent_sessions"]),
        ("high_usage", FRIENDLY_MESSAGES["high_usage"]),
        ("burst", DEFAULT_MESSAGE),
    ],
)
def test_tier1_queues_the_friendly_upgrade_email(
    licenses: Licenses, store: Store, settings: Settings, detection: str, message: str
) -> None:
    record, _ = issue(licenses, Tier.PRO)
    out = run(action(record, 1, detection_type=detection), licenses, store, settings)
    assert out.done and out.message_id is not None
    (mail,) = store.outbox_messages()
    assert (mail.to_addr, mail.subject) == ("owner@example.com", "Upgrade your ConnectSW license?")
    assert message in mail.body and "BUSINESS" in mail.body  # the next tier up
    url = f"https://connectsw.ai/upgrade?license={record.id}&reason={detection}&tier=BUSINESS"
    assert url in mail.body
    (event,) = store.security_events(record.id)
    assert event.kind == "response_tier1" and event.data["recommended"] == "BUSINESS"
    assert event.data["message_id"] == out.message_id
    assert licenses.get(record.id) == record  # nothing else changes


def test_tier2_halves_the_limits_keeps_the_originals_and_sends_the_notice(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    record, _ = issue(licenses, Tier.PRO)  # 1000 requests per hour, 10 projects
    out = run(action(record, 2), licenses, store, settings)
    assert out.done
    now = licenses.get(record.id)
    assert now.status is LicenseStatus.ACTIVE
    assert (now.entitlements.requests_per_hour, now.entitlements.max_projects) == (500, 5)
    assert now.throttle is not None and now.throttle.original == record.entitlements
    (mail,) = store.outbox_messages()
    assert mail.subject == "Action required: License usage limit"
    assert "Requests per hour: 1000 -> 500" in mail.body and "Projects: 10 -> 5" in mail.body
    assert f"https://connectsw.ai/resolve?license={record.id}" in mail.body
    (event,) = store.security_events(record.id)
    assert event.kind == "response_tier2"
    assert event.data["old_limits"] == {"requests_per_hour": 1000, "max_projects": 10}
    assert event.data["new_limits"] == {"requests_per_hour": 500, "max_projects": 5}


@pytest.mark.parametrize(("confidence", "escalated"), [(0.95, True), (0.9, False)])
def test_tier3_suspends_with_evidence_and_appeal_and_escalates_above_the_threshold(
    licenses: Licenses, store: Store, settings: Settings, confidence: float, escalated: bool
) -> None:
    record, _ = issue(licenses)
    out = run(action(record, 3, confidence=confidence), licenses, store, settings)
    assert out.done and out.escalated is escalated
    now = licenses.get(record.id)
    assert now.status is LicenseStatus.SUSPENDED and "many IP addresses" in (now.reason or "")
    (mail,) = store.outbox_messages()
    assert mail.subject == "ConnectSW account suspended"
    assert "ips_24h: 14" in mail.body and '["DE", "BR", "VN"]' in mail.body
    assert f"https://connectsw.ai/appeal?license={record.id}" in mail.body
    assert "support@connectsw.ai" in mail.body
    kinds = sorted(e.kind for e in store.security_events(record.id))
    assert kinds == (["escalation", "response_tier3"] if escalated else ["response_tier3"])


def test_the_urls_and_threshold_come_from_the_settings(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    conf = settings.responses.model_copy(update={"upgrade_url": "https://shop.example/up?src=mail"})
    piracy = settings.antipiracy.model_copy(update={"escalate_confidence": 0.5})
    custom = settings.model_copy(update={"responses": conf, "antipiracy": piracy})
    record, _ = issue(licenses, Tier.ENTERPRISE)
    run(action(record, 1), licenses, store, custom)
    (mail,) = store.outbox_messages()
    assert f"https://shop.example/up?src=mail&license={record.id}" in mail.body
    assert "tier=ENTERPRISE" in mail.body  # the top tier stays the top tier
    assert run(action(record, 3, confidence=0.6), licenses, store, custom).escalated


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_applying_the_same_finding_twice_sends_one_email_and_halves_once(
    licenses: Licenses, store: Store, settings: Settings, tier: int
) -> None:
    record, _ = issue(licenses)
    first = run(action(record, tier), licenses, store, settings)
    second = run(action(record, tier, evidence={"other": 1}), licenses, store, settings)
    assert first.status == "done" and second.status == "already_done"
    assert second.message_id == first.message_id
    assert len(store.outbox_messages()) == 1 and len(store.security_events(record.id)) == 1
    if tier == 2:
        assert licenses.get(record.id).entitlements.requests_per_hour == 500


@pytest.mark.both_stores
@pytest.mark.parametrize("tier", [1, 2])
def test_two_threads_applying_the_same_action_at_once_queue_one_email(
    settings: Settings, tier: int
) -> None:
    stores = [open_store(settings.store_url), open_store(settings.store_url)]
    try:
        record, _ = issue(Licenses(stores[0], SECRET, dict(DEFAULT_TIERS)))
        barrier = threading.Barrier(2)
        outcomes: list[ActionOutcome] = []

        def one(store: Store) -> None:
            barrier.wait()
            lic = Licenses(store, SECRET, dict(DEFAULT_TIERS))
            outcomes.append(run(action(record, tier), lic, store, settings))

        threads = [threading.Thread(target=one, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.status for o in outcomes) == ["already_done", "done"]
        assert len(stores[0].outbox_messages()) == 1
        assert len(stores[0].security_events(record.id)) == 1
        limit = stores[0].get_license(record.id).entitlements.requests_per_hour  # type: ignore[union-attr]
        assert limit == (500 if tier == 2 else 1000)
    finally:
        for s in stores:
            s.close()


def test_a_new_finding_does_not_halve_a_throttled_license_again_nor_act_on_a_suspended_one(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    record, _ = issue(licenses)
    run(action(record, 2), licenses, store, settings)
    again = run(action(record, 2, finding_key="another window"), licenses, store, settings)
    assert again.status == "skipped" and "throttled already" in again.detail
    assert licenses.get(record.id).entitlements.requests_per_hour == 500
    run(action(record, 3, finding_key="w3"), licenses, store, settings)
    later = run(action(record, 3, finding_key="w4"), licenses, store, settings)
    assert later.status == "skipped" and "suspended" in later.detail
    assert len(store.outbox_messages()) == 2


def test_reinstate_restores_the_limits_of_a_throttled_active_license(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    record, _ = issue(licenses)
    run(action(record, 2), licenses, store, settings)
    back = licenses.reinstate(record.id)
    assert back.status is LicenseStatus.ACTIVE and back.throttle is None
    assert back.entitlements == record.entitlements == licenses.get(record.id).entitlements
    with pytest.raises(InvalidState, match="active and not throttled: nothing to reinstate"):
        licenses.reinstate(record.id)
    # Reversed, the same finding is still applied: the scan does not throttle it again.
    assert run(action(record, 2), licenses, store, settings).status == "already_done"


def test_reinstate_undoes_a_suspension_after_a_throttle(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    record, _ = issue(licenses)
    run(action(record, 2), licenses, store, settings)
    run(action(record, 3, finding_key="later"), licenses, store, settings)
    # The state table's "active" (the admin API's reinstate) is the same rule.
    back = licenses.change(record.id, LicenseStatus.ACTIVE)
    assert (back.status, back.reason, back.throttle) == (LicenseStatus.ACTIVE, None, None)
    assert back.entitlements.requests_per_hour == 1000
    licenses.change(record.id, LicenseStatus.REVOKED, "chargeback")
    with pytest.raises(InvalidState, match="a revoked license cannot become active"):
        licenses.reinstate(record.id)
    assert run(action(record, 1, finding_key="x"), licenses, store, settings).status == "skipped"


def test_nothing_stored_ever_contains_a_license_key(
    licenses: Licenses, store: Store, settings: Settings
) -> None:
    record, key = issue(licenses)
    tag = key.rsplit("-", 1)[1]
    evidence = {"seen_key": key, "note": f"shared as {key.lower()} on a forum"}
    for tier in (1, 2, 3):
        a = action(record, tier, evidence=evidence, finding_key=f"{key}/{tier}", confidence=0.95)
        run(a, licenses, store, settings)
    texts = [json.dumps(m.__dict__, default=str) for m in store.outbox_messages()]
    texts += [json.dumps(e.data) for e in store.security_events(record.id)]
    texts.append(licenses.get(record.id).model_dump_json())
    assert len(texts) == 3 + 4 + 1  # three messages, three responses and an escalation
    for text in texts:
        assert tag not in text.upper(), text
    assert any(record.id in text for text in texts)


@pytest.mark.parametrize(
    "changes",
    [
        {"tier": 0},
        {"confidence": 1.5},
        {"confidence": float("nan")},
        {"confidence": True},
        {"detection_type": "Multi IP"},
        {"finding_key": "  "},
        {"finding_key": "k" * 201},
        {"evidence": {"rows": ["x" * 100] * 50}},
        {"evidence": {"bad": float("inf")}},
        {"evidence": {"obj": object()}},
        {"evidence": ["not", "a", "dict"]},
    ],
)
def test_malformed_actions_are_refused(licenses: Licenses, changes: dict[str, Any]) -> None:
    record, _ = issue(licenses)
    with pytest.raises(ValueError):
        action(record, **{"tier": 1, **changes})
