"""A scan's verdicts become response tiers once per finding (reference §3.2 → §3.3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store, open_store
from connectsw.licensing.analytics.detectors import Finding
from connectsw.licensing.analytics.respond import action_for, respond
from connectsw.licensing.analytics.scoring import verdict
from connectsw.licensing.models import LicenseStatus
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings.store_url)
    yield opened
    opened.close()


def _finding(license_id: str, detector: str, confidence: float) -> Finding:
    day = datetime(2026, 11, 2, tzinfo=UTC)
    return Finding(license_id, detector, "high", confidence, day, day, {"places": 9})


def test_each_recommendation_is_its_tier_and_a_second_scan_takes_no_second_action(
    store: Store, settings: Settings
) -> None:
    licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
    record, _ = licenses.issue(Tier.PRO, "a@example.com")
    findings = [
        _finding(record.id, "multi_ip", 0.97),
        _finding(record.id, "geographic_spread", 0.95),
    ]
    judged = verdict(record.id, findings, settings.antipiracy)
    assert judged.recommendation == "suspend"
    action = action_for(judged)
    assert action is not None and action.tier == 3 and action.detection_type == "multi_ip"
    assert action.finding_key == f"{record.id}/multi_ip/2026-11-02"

    first = respond([judged], store, settings)
    assert [(o["tier"], o["status"]) for o in first] == [(3, "done")]
    assert first[0]["escalated"]  # 0.97 > 0.9
    assert licenses.get(record.id).status is LicenseStatus.SUSPENDED
    again = respond([judged], store, settings)
    assert [o["status"] for o in again] == ["already_done"]
    assert len(store.outbox_messages()) == 1


def test_no_recommendation_no_action(store: Store, settings: Settings) -> None:
    judged = verdict("CSFW-PRO-X", [], settings.antipiracy)
    assert action_for(judged) is None
    assert respond([judged], store, settings) == []


def test_scan_apply_from_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env["CONNECTSW_DATA_DIR"] = str(tmp_path / "data")
    argv = [sys.executable, "-m", "connectsw.cli.main", "antipiracy", "scan", "--apply"]
    out = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["actions"] == []  # no usage yet: nothing to act on
    refused = subprocess.run(
        [*argv, "--data", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "--apply acts on this data dir" in refused.stderr


def test_analytics_report_is_the_scan_without_actions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env["CONNECTSW_DATA_DIR"] = str(tmp_path / "data")
    argv = [sys.executable, "-m", "connectsw.cli.main", "analytics", "report", "--json"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert "actions" not in body and body["licenses"] == []


def test_a_license_this_store_does_not_hold_is_skipped_and_the_others_acted_on(
    store: Store, settings: Settings
) -> None:
    licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
    record, _ = licenses.issue(Tier.PRO, "a@example.com")
    elsewhere = "CSFW-PRO-ELSEWHEREXXXXXXX"
    judged = [
        verdict(elsewhere, [_finding(elsewhere, "multi_ip", 0.97)], settings.antipiracy),
        verdict(record.id, [_finding(record.id, "multi_ip", 0.97)], settings.antipiracy),
    ]
    outcomes = respond(judged, store, settings)
    assert [(o["licenseId"], o["status"]) for o in outcomes] == [
        (elsewhere, "skipped"),
        (record.id, "done"),
    ]
    assert "not in this store" in outcomes[0]["detail"]
    assert [m.license_id for m in store.outbox_messages()] == [record.id]
