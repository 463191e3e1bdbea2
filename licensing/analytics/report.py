"""Per license: suspicion score, flags, evidence and recommendation, from a DuckDB connection.

``report(con, since, until)`` runs every detector on a connection that has the
``usage`` and ``licenses`` relations (the analytics views, or tables) and scores
the findings; :func:`render` prints it for a terminal. ``connectsw antipiracy
scan`` uses both; ``connectsw analytics report`` is meant to as well.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from connectsw.conf.settings import AntipiracySettings
from connectsw.core.errors import ConfigError
from connectsw.licensing.analytics.detectors import Connection, Dialect, scan
from connectsw.licensing.analytics.scoring import Verdict, verdicts

_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before now, or an ISO date or time (UTC if naive)."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(text.strip())
    if match:
        return now - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            "--since: expected a duration such as 7d, 12h, 30m or 2w, or an ISO date"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def report(
    con: Connection,
    since: datetime,
    until: datetime | None = None,
    *,
    license_id: str | None = None,
    config: AntipiracySettings | None = None,
    dialect: Dialect = "duckdb",
    rollup: str | None = None,
) -> list[Verdict]:
    """Verdicts of the licenses with findings in ``[since, until)``, most suspicious first
    (``rollup``: the hourly rollup's relation, see :func:`detectors.scan`)."""
    config = config or AntipiracySettings()
    until = until or datetime.now(UTC) + timedelta(seconds=1)
    findings = scan(con, since, until, config, dialect, rollup=rollup)
    if license_id is not None:
        findings = [f for f in findings if f.license_id == license_id]
    return verdicts(findings, config)


def to_json(found: list[Verdict], since: datetime, until: datetime) -> dict[str, Any]:
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "licenses": [v.to_json() for v in found],
    }


def summary(finding_evidence: dict[str, Any]) -> str:
    """A finding's evidence in one short line: its scalar values."""
    parts = [f"{k}={v}" for k, v in finding_evidence.items() if isinstance(v, int | float | str)]
    return ", ".join(parts)
