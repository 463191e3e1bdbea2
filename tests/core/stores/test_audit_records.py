"""Audit records (reference "Audit Logging") on both stores: batched, idempotent by event id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectsw.core.stores import Store
from connectsw.core.stores.audit import AuditRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(n: int, license_id: str | None = "CSFW-PRO-AAAA", **changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "event_id": f"ev-{n}",
        "ts": T0 + timedelta(seconds=n),
        "license_id": license_id,
        "user_id": None,
        "session_id": "ses_1" if n % 2 else None,
        "method": "POST",
        "endpoint": "/v1/sessions/{id}/heartbeat",
        "ip": "2001:db8::1",
        "user_agent": "curl/8",
        "status": 200,
        "latency_ms": 1.25,
        "error_code": None,
        **changes,
    }
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_records_are_written_in_one_batch_and_read_back_newest_first(store: Store) -> None:
    batch = [record(n) for n in range(5)] + [
        record(9, license_id=None, status=401, error_code="invalid_format", latency_ms=0.5)
    ]
    assert store.add_audit_records(batch) == 6
    mine = store.audit_records("CSFW-PRO-AAAA")
    assert mine == list(reversed(batch[:5]))
    assert mine[0].ts == T0 + timedelta(seconds=4)  # aware UTC, microseconds kept
    everyone = store.audit_records(limit=2)
    assert [r.event_id for r in everyone] == ["ev-9", "ev-4"]
    assert everyone[0].error_code == "invalid_format" and everyone[0].license_id is None


def test_writing_the_same_events_again_adds_nothing(store: Store) -> None:
    """Recovery after a crash replays a log whose events may be stored already."""
    store.add_audit_records([record(1), record(2)])
    assert store.add_audit_records([record(1), record(2), record(3)]) == 1
    assert [r.event_id for r in store.audit_records()] == ["ev-3", "ev-2", "ev-1"]
    assert store.add_audit_records([]) == 0
