"""A license's suspicion score and the recommended response (reference §3.2, §3.3).

Each detector contributes its strongest finding, weighted by severity (high 1.0,
medium 0.8, low 0.5); the score combines them as independent evidence
(``1 - Π(1 - weight × confidence)``), so two detectors agreeing weigh more than
either alone. The score picks a response tier of §3.3: ``upgrade_prompt`` (tier 1)
from ``antipiracy.score_upgrade``, ``soft_throttle`` (tier 2) from
``score_throttle``, ``suspend`` (tier 3, with an appeal link) from
``score_suspend`` when at least two detectors agree (one detector alone never
suspends). A suspension whose strongest finding is more confident than
``escalate_confidence`` (0.9) is escalated, as the reference's legal notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from connectsw.conf.settings import AntipiracySettings
from connectsw.licensing.analytics.detectors import DETECTORS, Finding

Recommendation = Literal["none", "upgrade_prompt", "soft_throttle", "suspend"]
TIER: dict[str, int] = {"none": 0, "upgrade_prompt": 1, "soft_throttle": 2, "suspend": 3}
WEIGHT = {"high": 1.0, "medium": 0.8, "low": 0.5}


@dataclass(frozen=True)
class Verdict:
    """A license's score, the recommendation and the findings behind them."""

    license_id: str
    score: float
    recommendation: Recommendation
    escalate: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        return [d for d in DETECTORS if any(f.detector == d for f in self.findings)]

    def to_json(self) -> dict[str, Any]:
        return {
            "license_id": self.license_id,
            "score": self.score,
            "recommendation": self.recommendation,
            "tier": TIER[self.recommendation],
            "escalate": self.escalate,
            "flags": self.flags,
            "findings": [f.to_json() for f in self.findings],
        }


def strongest(findings: Iterable[Finding]) -> dict[str, Finding]:
    """Each detector's most weighty finding."""
    best: dict[str, Finding] = {}
    for f in findings:
        current = best.get(f.detector)
        if current is None or _weight(f) > _weight(current):
            best[f.detector] = f
    return best


def _weight(f: Finding) -> float:
    return WEIGHT[f.severity] * f.confidence


def score(findings: Iterable[Finding]) -> float:
    """0 (nothing found) to 1: the detectors' strongest findings as independent evidence."""
    remaining = 1.0
    for f in strongest(findings).values():
        remaining *= 1.0 - _weight(f)
    return round(1.0 - remaining, 3)


def verdict(
    license_id: str, findings: Iterable[Finding], config: AntipiracySettings | None = None
) -> Verdict:
    """The score and recommendation of one license's findings."""
    config = config or AntipiracySettings()
    found = [f for f in findings if f.license_id == license_id]
    value = score(found)
    best = strongest(found)
    recommendation: Recommendation = "none"
    if value >= config.score_suspend and len(best) >= 2:
        recommendation = "suspend"
    elif value >= config.score_throttle:
        recommendation = "soft_throttle"
    elif value >= config.score_upgrade:
        recommendation = "upgrade_prompt"
    escalate = recommendation == "suspend" and any(
        f.confidence > config.escalate_confidence for f in best.values()
    )
    return Verdict(license_id, value, recommendation, escalate, found)


def verdicts(
    findings: Iterable[Finding], config: AntipiracySettings | None = None
) -> list[Verdict]:
    """One verdict per license with findings, most suspicious first."""
    found = list(findings)
    ids = sorted({f.license_id for f in found})
    out = [verdict(i, found, config) for i in ids]
    out.sort(key=lambda v: (-v.score, v.license_id))
    return out
