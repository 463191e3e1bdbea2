"""From a scan's verdicts to the response tiers (reference §3.2 → §3.3).

A verdict's recommendation names the tier (upgrade prompt 1, soft throttle 2,
suspension 3); its strongest finding names the detection type, the confidence and
the evidence. The finding key (license, detector, the UTC day its window starts)
makes a second scan of the same data take no second action
(:func:`connectsw.licensing.responses.apply` is idempotent per key and tier).
"""

from __future__ import annotations

from typing import Any

from connectsw.conf.settings import Settings
from connectsw.core.errors import NotFound
from connectsw.core.stores import Store
from connectsw.licensing.analytics.report import summary
from connectsw.licensing.analytics.scoring import Verdict, strongest
from connectsw.licensing.responses import ResponseAction, apply
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses

TIERS = {"upgrade_prompt": 1, "soft_throttle": 2, "suspend": 3}


def action_for(verdict: Verdict) -> ResponseAction | None:
    """The response a verdict calls for, or None (no recommendation)."""
    tier = TIERS.get(verdict.recommendation)
    if tier is None or not verdict.findings:
        return None
    best = max(strongest(verdict.findings).values(), key=lambda f: f.confidence)
    return ResponseAction(
        license_id=verdict.license_id,
        tier=tier,  # type: ignore[arg-type]
        detection_type=best.detector,
        confidence=round(best.confidence, 4),
        evidence={"summary": summary(best.evidence)[:1000], "score": round(verdict.score, 4)},
        finding_key=f"{verdict.license_id}/{best.detector}/{best.window_start:%Y-%m-%d}",
    )


def respond(verdicts: list[Verdict], store: Store, settings: Settings) -> list[dict[str, Any]]:
    """Apply each verdict's tier; one JSON-ready outcome per action taken or skipped (a
    license the store does not hold, such as one loaded by ``analytics import --licenses``
    from another region, is skipped: the others are still acted on)."""
    licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
    outcomes = []
    for verdict in verdicts:
        action = action_for(verdict)
        if action is None:
            continue
        try:
            done = apply(action, licenses=licenses, store=store, settings=settings)
        except NotFound:  # events of a license this store does not hold (another region's)
            outcomes.append(
                {
                    "licenseId": action.license_id,
                    "tier": action.tier,
                    "detectionType": action.detection_type,
                    "status": "skipped",
                    "detail": f"license {action.license_id} is not in this store: no action",
                    "escalated": False,
                }
            )
            continue
        outcomes.append(
            {
                "licenseId": action.license_id,
                "tier": action.tier,
                "detectionType": action.detection_type,
                "status": done.status,
                "detail": done.detail,
                "escalated": done.escalated,
            }
        )
    return outcomes
