"""The outbox on both stores: one message per dedupe key, sent or failed, responses atomic."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectsw.core.stores import Store
from connectsw.core.stores.outbox import OutboxMessage, Response
from connectsw.core.stores.sessions import SecurityEvent
from connectsw.licensing.models import License, LicenseStatus
from connectsw.licensing.tiers import DEFAULT_TIERS, Tier

from .conftest import Opener

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LICENSE_ID = "CSFW-PRO-AAAAAAAAAAAAAAAA"


def message(key: str = "f1/tier1", **changes: object) -> OutboxMessage:
    fields: dict[str, object] = {
        "license_id": LICENSE_ID,
        "to_addr": "a@example.com",
        "subject": "Upgrade your ConnectSW license?",
        "body": "Hello",
        "dedupe_key": key,
        "created_at": T0,
        **changes,
    }
    return OutboxMessage(**fields)  # type: ignore[arg-type]


def make_license(store: Store) -> License:
    record = License(
        id=LICENSE_ID,
        tier=Tier.PRO,
        email="a@example.com",
        entitlements=DEFAULT_TIERS[Tier.PRO],
        issued_at=T0,
        updated_at=T0,
    )
    store.create_license(record, "digest-1")
    return record


def test_a_dedupe_key_queues_one_message(store: Store) -> None:
    first = store.queue_message(message())
    assert first is not None
    assert store.queue_message(message(body="another")) is None
    second = store.queue_message(message("f2/tier1"))
    assert second is not None and second != first
    stored = store.outbox_message(first)
    assert stored == message(id=first)
    assert [m.id for m in store.outbox_messages()] == [first, second]
    assert store.outbox_message(999_999) is None


def test_sent_and_failed_attempts_are_recorded(store: Store) -> None:
    a = store.queue_message(message("a"))
    b = store.queue_message(message("b"))
    assert a is not None and b is not None
    store.mark_failed(b, "550 5.1.1 <x@y>: Recipient\n address rejected")
    assert store.mark_sent(a, T0 + timedelta(minutes=1))
    assert not store.mark_sent(a, T0 + timedelta(minutes=2))  # once
    sent, failed = store.outbox_message(a), store.outbox_message(b)
    assert sent is not None and failed is not None
    assert (sent.sent_at, sent.attempts, sent.last_error) == (T0 + timedelta(minutes=1), 1, None)
    assert (failed.sent_at, failed.attempts) == (None, 1)
    assert failed.last_error == "550 5.1.1 <x@y>: Recipient address rejected"
    assert [m.id for m in store.outbox_messages(unsent=True)] == [b]
    store.mark_failed(b, "x" * 5000)
    again = store.outbox_message(b)
    assert again is not None and again.attempts == 2 and len(again.last_error or "") == 500


def _suspend(record: License) -> Response:
    new = record.model_copy(update={"status": LicenseStatus.SUSPENDED, "reason": "shared"})
    event = SecurityEvent(T0, record.id, "response_tier3", {"finding_key": "f1"})
    return Response(message("f1/tier3"), new, (event,))


def test_a_response_writes_message_license_and_events_together(store: Store) -> None:
    make_license(store)
    applied = store.apply_response(LICENSE_ID, "f1/tier3", _suspend)
    assert applied.message_id is not None and applied.response is not None
    assert applied.response.message.id == applied.message_id
    stored = store.get_license(LICENSE_ID)
    assert stored is not None and stored.status is LicenseStatus.SUSPENDED
    (event,) = store.security_events(LICENSE_ID)
    assert event.kind == "response_tier3"
    assert event.data == {"finding_key": "f1", "message_id": applied.message_id}
    # Again: the dedupe key is taken; decide is not even asked.
    again = store.apply_response(LICENSE_ID, "f1/tier3", lambda r: pytest.fail("asked"))
    assert (again.message_id, again.response) == (applied.message_id, None)
    assert len(store.outbox_messages()) == 1 and len(store.security_events(LICENSE_ID)) == 1


def test_a_failing_or_empty_decision_writes_nothing(store: Store) -> None:
    make_license(store)

    def broken(record: License) -> Response:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.apply_response(LICENSE_ID, "f1/tier3", broken)
    assert store.apply_response(LICENSE_ID, "f1/tier3", lambda r: None).message_id is None
    assert store.outbox_messages() == [] and store.security_events(LICENSE_ID) == []
    stored = store.get_license(LICENSE_ID)
    assert stored is not None and stored.status is LicenseStatus.ACTIVE
    with pytest.raises(Exception, match="no license"):
        store.apply_response("CSFW-PRO-BBBBBBBBBBBBBBBB", "x", _suspend)


def test_two_writers_at_once_apply_a_response_once(open_new: Opener) -> None:
    """Two store instances (as two processes would have) race on one dedupe key."""
    make_license(open_new())
    stores = [open_new(), open_new()]
    barrier = threading.Barrier(2)
    results: list[int | None] = []
    decided: list[str] = []

    def decide(record: License) -> Response:
        decided.append(threading.current_thread().name)
        return _suspend(record)

    def run(store: Store) -> None:
        barrier.wait()
        applied = store.apply_response(LICENSE_ID, "f1/tier3", decide)
        results.append(None if applied.response is None else applied.message_id)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and sum(r is not None for r in results) == 1
    assert len(decided) == 1
    assert len(stores[0].outbox_messages()) == 1
    assert len(stores[0].security_events(LICENSE_ID)) == 1
