"""The suspicion score and the recommendation (reference §3.2-3.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectsw.conf.settings import AntipiracySettings
from connectsw.core.errors import ConfigError
from connectsw.licensing.analytics.detectors import Finding, confidence, severity
from connectsw.licensing.analytics.report import parse_since
from connectsw.licensing.analytics.scoring import score, verdict, verdicts

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def f(detector: str, conf: float, sev: str = "high", license_id: str = "L1") -> Finding:
    return Finding(license_id, detector, sev, conf, T0, T0 + timedelta(days=1))  # type: ignore[arg-type]


def test_confidence_and_severity_grow_with_the_excess() -> None:
    assert confidence(1.0) == 0.5 and confidence(2.0) == 0.75 and confidence(100) == 0.99
    assert severity("concurrent_sessions", 1.1) == "low"
    assert severity("concurrent_sessions", 2) == "medium"
    assert severity("concurrent_sessions", 4) == "high"
    assert severity("multi_ip", 1.01) == "high"


def test_no_findings_no_suspicion() -> None:
    v = verdict("L1", [])
    assert (v.score, v.recommendation, v.escalate, v.flags) == (0.0, "none", False, [])


def test_a_weak_finding_is_no_recommendation() -> None:
    assert verdict("L1", [f("burst", 0.55, "low")]).recommendation == "none"


def test_one_detector_prompts_or_throttles_but_never_suspends() -> None:
    assert verdict("L1", [f("multi_ip", 0.55)]).recommendation == "upgrade_prompt"
    assert verdict("L1", [f("multi_ip", 0.8)]).recommendation == "soft_throttle"
    alone = verdict("L1", [f("multi_ip", 0.99), f("multi_ip", 0.6)])
    assert alone.score == 0.99 and alone.recommendation == "soft_throttle"


def test_agreeing_detectors_suspend_and_escalate_above_0_9() -> None:
    v = verdict("L1", [f("multi_ip", 0.95), f("geographic_spread", 0.8)])
    assert v.recommendation == "suspend" and v.escalate
    assert v.flags == ["multi_ip", "geographic_spread"]
    w = verdict("L1", [f("multi_ip", 0.85), f("geographic_spread", 0.8)])
    assert w.score >= 0.9 and w.recommendation == "suspend" and not w.escalate


def test_score_uses_each_detectors_strongest_finding() -> None:
    assert score([f("burst", 0.6, "medium"), f("burst", 0.9, "medium")]) == pytest.approx(0.72)
    assert score([f("multi_ip", 0.5), f("burst", 0.5, "medium")]) == pytest.approx(0.7)


def test_thresholds_are_settings() -> None:
    strict = AntipiracySettings(score_upgrade=0.3, score_throttle=0.4, score_suspend=0.5)
    assert verdict("L1", [f("multi_ip", 0.55)], strict).recommendation == "soft_throttle"
    with pytest.raises(ValueError):
        AntipiracySettings(score_upgrade=0.9, score_throttle=0.5)


def test_verdicts_most_suspicious_first() -> None:
    found = [f("multi_ip", 0.6, license_id="A"), f("multi_ip", 0.9, license_id="B")]
    assert [v.license_id for v in verdicts(found)] == ["B", "A"]
    assert verdicts(found)[0].to_json()["tier"] == 2


def test_parse_since() -> None:
    now = datetime(2026, 3, 9, tzinfo=UTC)
    assert parse_since("7d", now) == T0
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2026-03-02", now) == T0
    with pytest.raises(ConfigError, match="--since"):
        parse_since("last week", now)
