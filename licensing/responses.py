"""Anti-piracy response tiers (reference §3.3): what is done about a detector's finding.

The detectors' scoring builds a :class:`ResponseAction` per finding and calls
:func:`apply`:

- tier 1: the friendly upgrade e-mail ("Upgrade your ConnectSW license?") with the
  reference's message for the detection type, the next tier up and an upgrade link;
- tier 2: soft throttle: the license's ``requests_per_hour`` (and ``max_projects``)
  halved, the originals kept on the license, and the notice ("Action required:
  License usage limit") with the old and new limits;
- tier 3: suspension (the license state table's rule) and the notice ("ConnectSW
  account suspended") with the evidence, an appeal link and the support address;
  above ``antipiracy.escalate_confidence`` also an ``escalation`` security event.

Each action is a security event (``response_tier1`` .. ``response_tier3``) and is
applied once per finding and tier: the outbox's UNIQUE ``dedupe_key``
(``FINDING_KEY/tierN``) is claimed in the same transaction as the license change
and the events (core/stores/outbox.py), so a second scan, or two at once, sends no
second e-mail and halves nothing twice. ``connectsw license reinstate`` undoes
tiers 2 and 3 (licensing/models.py :func:`~connectsw.licensing.models.reinstated`).

E-mails and events name a license by its public id; a license key found in the
evidence or the finding key is cut to its public id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectsw.conf.settings import ResponsesSettings, Settings
from connectsw.core.models import utcnow
from connectsw.core.stores import Store
from connectsw.core.stores.outbox import OutboxMessage, Response
from connectsw.core.stores.sessions import SecurityEvent
from connectsw.licensing.keys import PREFIX
from connectsw.licensing.models import License, LicenseStatus, throttled
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier

SUBJECTS = {
    1: "Upgrade your ConnectSW license?",
    2: "Action required: License usage limit",
    3: "ConnectSW account suspended",
}
"""The reference's subjects (templates friendly-upgrade, throttle-notice, account-suspended)."""

FRIENDLY_MESSAGES = {
    "multi_ip": "We noticed your account is being used from multiple locations. If your team"
    " is growing, consider our Business plan!",
    "concurrent_sessions": "Looks like multiple people might be using your account. Our"
    " Business plan supports team collaboration!",
    "high_usage": "You're a power user! Our Pro plan includes higher limits that might be a"
    " better fit.",
}
"""Reference §3.3 ``getFriendlyMessage``; other types get :data:`DEFAULT_MESSAGE`."""
DEFAULT_MESSAGE = "Your usage pattern suggests you might benefit from an upgraded plan."

DETECTION_LABELS = {
    "multi_ip": "use from many IP addresses",
    "concurrent_sessions": "more sessions at once than the license's users",
    "round_the_clock": "use around the clock from many addresses",
    "burst": "scripted bursts of requests",
    "impossible_travel": "use from distant places at the same time",
    "high_usage": "usage above the plan's limits",
}
"""How the notices name a detection type (others: the type itself)."""

MAX_EVIDENCE_BYTES = 4096
MAX_FINDING_KEY = 200
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: A license key anywhere in a text: the public id (group 1) and its tag.
_KEY = re.compile(
    rf"({PREFIX}-(?:{'|'.join(t.value for t in Tier)})-[A-Z2-7]{{16}})-[A-Z2-7]{{16}}",
    re.IGNORECASE,
)
_NEXT_TIER = {
    Tier.FREE: Tier.PRO,
    Tier.PRO: Tier.BUSINESS,
    Tier.BUSINESS: Tier.ENTERPRISE,
    Tier.ENTERPRISE: Tier.ENTERPRISE,
}


def without_keys(text: str) -> str:
    """``text`` with every license key cut to its public id (the key without its tag)."""
    return _KEY.sub(lambda m: m.group(1), text)


@dataclass(frozen=True)
class ResponseAction:
    """One finding to act on, as the detectors' scoring hands it over.

    ``finding_key`` names the finding stably (e.g. license, detector and window
    start): the same key and tier are applied once. ``evidence`` is small JSON
    (at most 4 KiB) shown in the suspension notice and kept in the security event.
    Raises ValueError for a tier other than 1-3, a confidence outside 0..1, a
    detection type that is not a lower-case identifier, an empty or over-long
    finding key, or evidence that is not small JSON.
    """

    license_id: str
    tier: Literal[1, 2, 3]
    detection_type: str
    confidence: float
    evidence: dict[str, Any]
    finding_key: str

    def __post_init__(self) -> None:
        if self.tier not in (1, 2, 3):
            raise ValueError("tier: 1, 2 or 3")
        number = isinstance(self.confidence, int | float) and not isinstance(self.confidence, bool)
        if not (number and 0 <= self.confidence <= 1):  # NaN fails the comparison
            raise ValueError("confidence: a number from 0 to 1")
        if not _TYPE.fullmatch(self.detection_type):
            raise ValueError("detection_type: a lower-case identifier such as multi_ip")
        key = without_keys(" ".join(self.finding_key.split()))
        if not key or len(key) > MAX_FINDING_KEY:
            raise ValueError(f"finding_key: 1 to {MAX_FINDING_KEY} characters")
        try:
            text = without_keys(json.dumps(self.evidence, sort_keys=True, allow_nan=False))
        except (TypeError, ValueError):
            raise ValueError("evidence: a JSON object (no NaN or infinity)") from None
        if not isinstance(self.evidence, dict) or len(text.encode()) > MAX_EVIDENCE_BYTES:
            raise ValueError(f"evidence: a JSON object of at most {MAX_EVIDENCE_BYTES} bytes")
        object.__setattr__(self, "license_id", self.license_id.strip().upper())
        object.__setattr__(self, "confidence", float(self.confidence))
        object.__setattr__(self, "finding_key", key)
        object.__setattr__(self, "evidence", json.loads(text))

    @property
    def dedupe_key(self) -> str:
        """What makes the action happen once: the finding and the tier."""
        return f"{self.finding_key}/tier{self.tier}"


@dataclass(frozen=True)
class ActionOutcome:
    """What :func:`apply` did: ``done``, ``already_done`` (this finding and tier were
    applied before: nothing new) or ``skipped`` (nothing to do, e.g. already suspended).
    ``detail`` is one line for people; ``message_id`` the outbox message (new or earlier).
    """

    action: ResponseAction
    status: Literal["done", "already_done", "skipped"]
    detail: str
    message_id: int | None = None
    escalated: bool = False

    @property
    def done(self) -> bool:
        return self.status == "done"


def link(base: str, **params: str) -> str:
    """``base`` with ``params`` added to its query (existing parameters kept)."""
    parts = urlsplit(base)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def recommended_tier(tier: Tier) -> Tier:
    """The next tier up (ENTERPRISE stays ENTERPRISE: more seats)."""
    return _NEXT_TIER[tier]


def _limits(record: License) -> dict[str, int | None]:
    e = record.entitlements
    return {"requests_per_hour": e.requests_per_hour, "max_projects": e.max_projects}


def _label(detection_type: str) -> str:
    return DETECTION_LABELS.get(detection_type, detection_type.replace("_", " "))


def _evidence_lines(evidence: dict[str, Any], limit: int = 12) -> list[str]:
    lines = []
    for name, value in list(evidence.items())[:limit]:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        text = " ".join(str(text).split())
        lines.append(f"  - {name}: {text[:200] + '...' if len(text) > 200 else text}")
    if len(evidence) > limit:
        lines.append(f"  - ... and {len(evidence) - limit} more")
    return lines or ["  (none recorded)"]


def _tier1(a: ResponseAction, record: License, conf: ResponsesSettings) -> str:
    better = recommended_tier(record.tier)
    url = link(conf.upgrade_url, license=record.id, reason=a.detection_type, tier=better.value)
    return "\n".join(
        [
            "Hello,",
            "",
            FRIENDLY_MESSAGES.get(a.detection_type, DEFAULT_MESSAGE),
            "",
            f"Your license {record.id} is on the {record.tier.value} plan;"
            f" we recommend {better.value} for the way you use ConnectSW.",
            "",
            f"Upgrade: {url}",
            f"Questions: {conf.support_email}",
            "",
            "The ConnectSW team",
        ]
    )


def _tier2(a: ResponseAction, old: License, new: License, conf: ResponsesSettings) -> str:
    def projects(r: License) -> str:
        n = r.entitlements.max_projects
        return "unlimited" if n is None else str(n)

    rows = [
        f"  Requests per hour: {old.entitlements.requests_per_hour}"
        f" -> {new.entitlements.requests_per_hour}"
    ]
    if old.entitlements.max_projects is not None:
        rows.append(f"  Projects: {projects(old)} -> {projects(new)}")
    return "\n".join(
        [
            "Hello,",
            "",
            f"We have reduced the limits of your ConnectSW license {old.id} because of"
            f" unusual usage: {_label(a.detection_type)}.",
            "",
            *rows,
            "",
            f"To resolve this and restore your limits: {link(conf.resolve_url, license=old.id)}",
            f"Questions: {conf.support_email}",
            "",
            "The ConnectSW team",
        ]
    )


def _tier3(a: ResponseAction, record: License, conf: ResponsesSettings) -> str:
    return "\n".join(
        [
            "Hello,",
            "",
            f"Your ConnectSW license {record.id} has been suspended: {_label(a.detection_type)}.",
            "",
            "What we observed:",
            *_evidence_lines(a.evidence),
            "",
            "If this is a mistake, appeal and we will review it:"
            f" {link(conf.appeal_url, license=record.id)}",
            f"Support: {conf.support_email}",
            "",
            "The ConnectSW team",
        ]
    )


def apply(
    action: ResponseAction,
    *,
    licenses: Licenses,
    store: Store,
    settings: Settings,
    now: datetime | None = None,
) -> ActionOutcome:
    """Take the action's tier response once (see the module's docstring).

    One transaction claims the finding (the outbox's UNIQUE dedupe key), changes the
    license and records the security events, or nothing is written. Skipped, with
    nothing written: any tier for a license that is not active (tier 3: already
    suspended), and tier 2 for a license that is throttled already (its limits are
    halved once until an admin reinstates it).

    Raises NotFound if the license does not exist.
    """
    conf = settings.responses
    now = now or utcnow()
    skipped: list[str] = []
    escalated: list[bool] = []

    def event(kind: str, record: License, **extra: Any) -> SecurityEvent:
        data = {
            "finding_key": action.finding_key,
            "tier": action.tier,
            "detection_type": action.detection_type,
            "confidence": action.confidence,
            "evidence": action.evidence,
            **extra,
        }
        return SecurityEvent(now, record.id, kind, data)

    def message(record: License, body: str) -> OutboxMessage:
        return OutboxMessage(
            license_id=record.id,
            to_addr=record.email,
            subject=SUBJECTS[action.tier],
            body=without_keys(body),
            dedupe_key=action.dedupe_key,
            created_at=now,
        )

    def decide(record: License) -> Response | None:
        if record.status is not LicenseStatus.ACTIVE:
            skipped.append(f"license {record.id} is {record.status.value}")
            return None
        kind = f"response_tier{action.tier}"
        if action.tier == 1:
            better = recommended_tier(record.tier).value
            body = _tier1(action, record, conf)
            return Response(message(record, body), None, (event(kind, record, recommended=better),))
        if action.tier == 2:
            if record.throttle is not None:
                skipped.append(f"license {record.id} is throttled already")
                return None
            new = throttled(record, f"anti-piracy: {action.detection_type}", now)
            limits = {"old_limits": _limits(record), "new_limits": _limits(new)}
            body = _tier2(action, record, new, conf)
            return Response(message(record, body), new, (event(kind, record, **limits),))
        reason = (
            f"anti-piracy: {_label(action.detection_type)} (confidence {action.confidence:.2f})"
        )
        new = licenses.changed(record, LicenseStatus.SUSPENDED, reason)
        events = [event(kind, record)]
        threshold = settings.antipiracy.escalate_confidence  # one rule with the scoring's
        if action.confidence > threshold:
            events.append(event("escalation", record, threshold=threshold))
            escalated.append(True)
        return Response(message(record, _tier3(action, record, conf)), new, tuple(events))

    applied = store.apply_response(action.license_id, action.dedupe_key, decide)
    if applied.response is None:
        if applied.message_id is not None:
            return ActionOutcome(
                action,
                "already_done",
                f"tier {action.tier} for finding {action.finding_key} was applied before"
                f" (message {applied.message_id})",
                applied.message_id,
            )
        return ActionOutcome(action, "skipped", skipped[0] if skipped else "nothing to do")
    what = {
        1: "upgrade e-mail queued",
        2: "limits halved, notice queued",
        3: "suspended, notice queued" + (", escalated" if escalated else ""),
    }[action.tier]
    return ActionOutcome(
        action,
        "done",
        f"license {action.license_id}: {what} (message {applied.message_id})",
        applied.message_id,
        bool(escalated),
    )
