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


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest start of a window (``--since``): no usage event is older."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before now, or an ISO date or time (UTC if naive).

    Raises:
        ConfigError: not one of those, before :data:`EARLIEST` or after now (a duration
            too long for a date, ``99999999999d``, was an OverflowError: trial 8b, F9).
    """
    now = now or datetime.now(UTC)
    given = text.strip()
    match = _SINCE.match(given)
    try:
        if match:
            value = now - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        else:
            try:
                value = datetime.fromisoformat(given)
            except ValueError:
                raise ConfigError(
                    "--since: expected a duration such as 7d, 12h, 30m or 2w, or an ISO date"
                ) from None
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
        late = value > now
        early = value < EARLIEST
    except OverflowError:  # out of datetime's range (years 1 to 9999) once made UTC
        late = not match and value.year > EARLIEST.year
        early = not late
    if late:
        raise ConfigError(f"--since {given}: in the future; give a time before now")
    if early:
        raise ConfigError(
            f"--since {given}: before {EARLIEST:%Y-%m-%d} UTC; give a shorter duration"
            " or a later date"
        )
    return value


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
