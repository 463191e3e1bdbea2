"""The anti-piracy detectors of reference §3.2, as SQL over ``usage`` and ``licenses``.

Every detector reads one shared pre-aggregation of the window's events (``ev``,
:func:`_base`): one row per license × UTC hour × user × session × IP × country × ASN
× automated, with the request count, first and last time, the tier, and two bit masks
of the hour (session buckets and minutes with requests). :func:`scan` materialises it
once as a temporary table (:func:`shared_stage`) and runs the five detectors over it,
so the events are read and grouped once per scan, not five times; ``render(name, ...)``
alone gives one standalone SELECT (the pre-aggregation as its first CTE) for analysts
and tests. The relations are ``usage`` (DESIGN.md's columns,
:data:`connectsw.licensing.usage.COLUMNS`) and ``licenses`` (license_id, tier,
max_users, status): the analytics views, tables made in a test, or PostgreSQL (the
benchmark's baseline). The SQL keeps to what both dialects share (``VALUES`` instead
of a temporary table for constants, no dialect-only aggregates); the one difference is
in the pre-aggregation, which DuckDB groups by the strings' hashes and computes time
units with integer arithmetic (see :func:`_base`); the rows are the same.

Windows are UTC days (``day_no``: days since the epoch) for the per-day rules
(the reference's "24 hours"), hours for bursts, the scan's window for concurrent
sessions (buckets of ``session_bucket_seconds``, which divides an hour: a session's
buckets of one hour are a bit mask), and minutes for impossible travel.

Concurrent sessions count every CI (automation) session of a license in one bucket
as one client: parallel CI jobs are one seat's work.

A *place* is a network, not an address: ``country:ASN``, or the /24 (IPv4) or /48
(IPv6) prefix when the ASN is unknown (string functions, on the pre-aggregated rows).
A phone on a carrier that hands out a new address every hour, or CI runners of one
cloud provider, are one place; the multi-IP detector counts places.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from connectsw.conf.settings import AntipiracySettings
from connectsw.licensing.analytics.places import centroid_rows, distance_km

Severity = Literal["low", "medium", "high"]
Dialect = Literal["duckdb", "postgres"]

DETECTORS: tuple[str, ...] = (
    "multi_ip",
    "concurrent_sessions",
    "round_the_clock",
    "burst",
    "geographic_spread",
)
#: The reference's severity of each detector, before it is adjusted by how far over.
BASE_SEVERITY: dict[str, Severity] = {
    "multi_ip": "high",
    "concurrent_sessions": "medium",
    "round_the_clock": "high",
    "burst": "medium",
    "geographic_spread": "high",
}
EVIDENCE_ITEMS = 10
"""At most this many rows (places, jumps) in a finding's evidence."""


class Connection(Protocol):
    """A DuckDB connection or a psycopg one: ``execute(sql)`` then ``fetchall()``."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Finding:
    """One detector's flag on one license for one window, with its evidence."""

    license_id: str
    detector: str
    severity: Severity
    confidence: float
    window_start: datetime
    window_end: datetime
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_start"] = self.window_start.isoformat()
        data["window_end"] = self.window_end.isoformat()
        return data


def confidence(ratio: float) -> float:
    """How sure a flag is from how far over its threshold: 0.5 at the threshold, → 1."""
    return round(max(0.0, min(0.99, 1.0 - 0.5 / ratio)) if ratio > 0 else 0.0, 3)


def severity(detector: str, ratio: float) -> Severity:
    """The reference's severity; a medium one is high at 3× its threshold, low below 1.25×."""
    base = BASE_SEVERITY[detector]
    if base == "medium" and ratio >= 3:
        return "high"
    if base == "medium" and ratio < 1.25:
        return "low"
    return base


# -- SQL -------------------------------------------------------------------------------


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("detector windows are aware datetimes (UTC)")
    return "TIMESTAMPTZ '" + value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00'"


def _num(value: float) -> str:
    return repr(float(value))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: The scan's shared stage, materialised once per :func:`scan` as a temporary table.
BASE = "antipiracy_scan_base"


def _window(since: datetime, until: datetime) -> str:
    return f"u.ts >= {_ts(since)} AND u.ts < {_ts(until)} AND u.license_id IS NOT NULL"


def _automated(config: AntipiracySettings) -> str:
    agents = " OR ".join(f"u.user_agent LIKE {_quote(p)}" for p in config.automation_agents)
    return agents or "FALSE"


def _unit(dialect: Dialect, seconds: int) -> str:
    """Whole ``seconds`` since the epoch of ``u.ts``: integer arithmetic in DuckDB."""
    if dialect == "duckdb":
        return f"(epoch_us(u.ts) // {seconds * 1_000_000})"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM u.ts) / {seconds}) AS BIGINT)"


def _base(since: datetime, until: datetime, config: AntipiracySettings, dialect: Dialect) -> str:
    """The shared pre-aggregation: one row per license × UTC hour × user × session × IP ×
    country × ASN × automated, with the request count, first and last time, the highest
    tier seen, and two bit masks of the hour: ``buckets``, the session buckets it made
    requests in, and ``minutes``, the minutes. ``place`` and ``day_no`` are derived after
    grouping, on far fewer rows.

    The two renderings differ only in how the strings are grouped: PostgreSQL groups by
    the columns; DuckDB by their 64-bit hashes (one ``hash`` per dictionary entry of the
    Parquet column, then integer keys), taking each column's ``ANY_VALUE``: the same
    groups unless two values of one column hash alike within one license and hour."""
    bucket = int(config.session_bucket_seconds)
    per_hour = 3600 // bucket
    prefix = (
        "CASE WHEN strpos(a.ip, ':') = 0 "
        "THEN left(a.ip, length(a.ip) - strpos(reverse(a.ip), '.')) "
        "WHEN length(a.ip) - length(replace(a.ip, ':', '')) >= 3 "
        "THEN split_part(a.ip, ':', 1) || ':' || split_part(a.ip, ':', 2) || ':' "
        "|| split_part(a.ip, ':', 3) || ':' "
        "ELSE a.ip END"
    )
    strings = ("license_id", "user_id", "session_id", "ip")
    if dialect == "duckdb":
        keys = [f"hash(e.{c})" for c in strings]
        values = [f"ANY_VALUE(e.{c}) AS {c}" for c in strings]
    else:
        keys = [f"e.{c}" for c in strings]
        values = [f"e.{c}" for c in strings]
    return f"""SELECT a.*,
       CAST(FLOOR(a.hour_no / 24.0) AS BIGINT) AS day_no,
       COALESCE(a.country, '') || ':' || COALESCE(CAST(a.asn AS VARCHAR), {prefix}) AS place
FROM (
  SELECT {", ".join(values)}, e.hour_no, e.country, e.asn, e.automated,
         MAX(e.tier) AS tier, COUNT(*) AS n, MIN(e.ts) AS t0, MAX(e.ts) AS t1,
         BIT_OR(e.bucket_bit) AS buckets, BIT_OR(e.minute_bit) AS minutes
  FROM (
    SELECT u.license_id, u.tier, u.ts, u.user_id, u.session_id, u.ip, u.country, u.asn,
           CASE WHEN {_automated(config)} THEN 1 ELSE 0 END AS automated,
           {_unit(dialect, 3600)} AS hour_no,
           CAST(1 AS BIGINT) << CAST(MOD({_unit(dialect, bucket)}, {per_hour}) AS INTEGER)
             AS bucket_bit,
           CAST(1 AS BIGINT) << CAST(MOD({_unit(dialect, 60)}, 60) AS INTEGER) AS minute_bit
    FROM usage u
    WHERE {_window(since, until)}
  ) e
  GROUP BY {keys[0]}, e.hour_no, {", ".join(keys[1:])}, e.country, e.asn, e.automated
) a"""


_SEATS = """seats AS (
  SELECT license_id, MAX(tier) AS tier, MAX(max_users) AS max_users
  FROM licenses GROUP BY license_id
)"""


def _tier_threshold(config: AntipiracySettings, column: str) -> str:
    cases = " ".join(
        f"WHEN '{tier.value}' THEN {int(n)}" for tier, n in config.multi_ip_thresholds.items()
    )
    return f"(CASE {column} {cases} ELSE {min(config.multi_ip_thresholds.values())} END)"


def _multi_ip(config: AntipiracySettings) -> str:
    seats = "GREATEST(COALESCE(s.max_users, 1), 1)"
    allowed = (
        f"{_tier_threshold(config, 'COALESCE(s.tier, d.ev_tier)')} * {seats}"
        f" * {_num(config.multi_ip_grace)}"
    )
    return f"""pd AS (
  SELECT license_id, day_no, place, SUM(n) AS n, COUNT(DISTINCT ip) AS ips, MAX(tier) AS ev_tier
  FROM ev GROUP BY license_id, day_no, place
),
d AS (
  SELECT license_id, day_no, COUNT(*) AS places, SUM(ips) AS ips, MAX(ev_tier) AS ev_tier
  FROM pd GROUP BY license_id, day_no
),
flagged AS (
  SELECT d.license_id, d.day_no, d.places, d.ips, COALESCE(s.tier, d.ev_tier) AS tier,
         {seats} AS max_users, CAST({allowed} AS DOUBLE PRECISION) AS allowed
  FROM d LEFT JOIN seats s ON s.license_id = d.license_id
  WHERE d.places > {allowed}
)
SELECT f.license_id, f.day_no, f.places, f.ips, f.tier, f.max_users, f.allowed,
       pd.place, pd.n, pd.ips
FROM flagged f JOIN pd ON pd.license_id = f.license_id AND pd.day_no = f.day_no
ORDER BY f.license_id, f.day_no, pd.n DESC, pd.place"""


def _concurrent(config: AntipiracySettings) -> str:
    """Sessions per bucket from the hourly bit masks: per license and hour, one count
    per bucket of the hour (``c0`` ...), compared with the allowance in SQL."""
    per_hour = 3600 // int(config.session_bucket_seconds)
    seats = "GREATEST(COALESCE(s.max_users, 1), 1)"
    allowed = f"{seats} * {_num(config.sessions_per_user)} * {_num(config.session_grace)}"
    ks = range(per_hour)
    counts = ",\n         ".join(f"CAST(SUM((mask >> {k}) & 1) AS BIGINT) AS c{k}" for k in ks)
    over = " + ".join(f"CASE WHEN sh.c{k} > {allowed} THEN 1 ELSE 0 END" for k in ks)
    peak = f"GREATEST({', '.join(f'sh.c{k}' for k in ks)})" if per_hour > 1 else "sh.c0"
    first = " ".join(f"WHEN sh.c{k} > {allowed} THEN {k}" for k in ks)
    last = " ".join(f"WHEN sh.c{k} > {allowed} THEN {k}" for k in reversed(ks))
    return f"""ss AS (
  SELECT license_id, hour_no, BIT_OR(buckets) AS mask
  FROM ev WHERE session_id IS NOT NULL AND automated = 0
  GROUP BY license_id, hour_no, session_id
  UNION ALL
  SELECT license_id, hour_no, BIT_OR(buckets) AS mask
  FROM ev WHERE session_id IS NOT NULL AND automated = 1
  GROUP BY license_id, hour_no
),
sh AS (
  SELECT license_id, hour_no,
         {counts}
  FROM ss GROUP BY license_id, hour_no
),
over AS (
  SELECT sh.license_id, {seats} AS max_users, CAST({allowed} AS DOUBLE PRECISION) AS allowed,
         {over} AS buckets,
         {peak} AS peak,
         sh.hour_no * {per_hour} + CASE {first} END AS first_b,
         sh.hour_no * {per_hour} + CASE {last} END AS last_b
  FROM sh LEFT JOIN seats s ON s.license_id = sh.license_id
)
SELECT license_id, MAX(max_users), MAX(allowed), SUM(buckets) AS buckets, MAX(peak) AS peak,
       MIN(first_b) AS first_b, MAX(last_b) AS last_b
FROM over GROUP BY license_id
HAVING SUM(buckets) >= {int(config.session_min_buckets)}
ORDER BY license_id"""


def _round_the_clock(config: AntipiracySettings) -> str:
    seats = "GREATEST(COALESCE(s.max_users, 1), 1)"
    return f"""hp AS (
  SELECT license_id, day_no, hour_no, COUNT(DISTINCT place) AS places, SUM(n) AS n
  FROM ev GROUP BY license_id, day_no, hour_no
),
dd AS (
  SELECT license_id, day_no, COUNT(*) AS hours, MAX(places) AS peak_places, SUM(n) AS n
  FROM hp GROUP BY license_id, day_no
  HAVING COUNT(*) >= {int(config.round_the_clock_hours)}
)
SELECT dd.license_id, dd.day_no, dd.hours, dd.peak_places, dd.n,
       {int(config.round_the_clock_places)} * {seats} AS needed
FROM dd LEFT JOIN seats s ON s.license_id = dd.license_id
WHERE dd.peak_places >= {int(config.round_the_clock_places)} * {seats}
ORDER BY dd.license_id, dd.day_no"""


def _burst(config: AntipiracySettings) -> str:
    return f"""bh AS (
  SELECT license_id, hour_no, COALESCE(session_id, ip) AS client, SUM(n) AS n,
         CAST(EXTRACT(EPOCH FROM MAX(t1) - MIN(t0)) AS DOUBLE PRECISION) AS span
  FROM ev GROUP BY license_id, hour_no, COALESCE(session_id, ip)
),
b AS (
  SELECT * FROM bh
  WHERE n > {int(config.burst_min_requests)}
    AND span / (n - 1) < {_num(config.burst_max_interval)}
)
SELECT license_id, COUNT(DISTINCT hour_no) AS hours, MAX(n) AS peak, MIN(span / (n - 1)) AS fastest,
       COUNT(DISTINCT client) AS clients, MIN(hour_no) AS first_h, MAX(hour_no) AS last_h
FROM b GROUP BY license_id
HAVING COUNT(DISTINCT hour_no) > {int(config.burst_min_hours)}
ORDER BY license_id"""


def _far_pairs(config: AntipiracySettings) -> str:
    """``(a, b, km)`` rows: the ordered pairs of countries whose centroids are further
    apart than the margin (the only pairs a jump can be impossible between)."""
    rows = [
        (a, b, km)
        for a, _, _ in centroid_rows()
        for b, _, _ in centroid_rows()
        if a != b and (km := distance_km(a, b)) is not None and km > config.geo_margin_km
    ]
    return ", ".join(f"('{a}', '{b}', {km!r})" for a, b, km in rows) or "('', '', 0.0)"


def _geographic(config: AntipiracySettings) -> str:
    """Impossible travel between one user's consecutive uses (per minute, by country).

    Hours in which the user is in one country are one group (first and last use); in
    an hour with two or more countries each minute of use is a group, its times the
    minute's bounds clipped to the hour's first and last use. Only users seen in two
    or more countries are ordered, and distances come from :func:`_far_pairs`."""
    minutes = ", ".join(f"({k})" for k in range(60))
    return f"""pairs (a, b, km) AS (VALUES {_far_pairs(config)}),
minutes (k) AS (VALUES {minutes}),
gh AS (
  SELECT license_id, COALESCE(user_id, '') AS who, country, hour_no, MIN(t0) AS t0,
         MAX(t1) AS t1, BIT_OR(minutes) AS minutes
  FROM ev WHERE country IS NOT NULL AND automated = 0
  GROUP BY license_id, COALESCE(user_id, ''), country, hour_no
),
travellers AS (
  SELECT license_id, who FROM gh GROUP BY license_id, who HAVING COUNT(DISTINCT country) > 1
),
gc AS (
  SELECT gh.*, COUNT(*) OVER (PARTITION BY gh.license_id, gh.who, gh.hour_no) AS countries
  FROM gh JOIN travellers t ON t.license_id = gh.license_id AND t.who = gh.who
),
g AS (
  SELECT license_id, who, country, t0, t1 FROM gc WHERE countries = 1
  UNION ALL
  SELECT gc.license_id, gc.who, gc.country,
         GREATEST(gc.t0, TO_TIMESTAMP(gc.hour_no * 3600 + mm.k * 60)) AS t0,
         LEAST(gc.t1, TO_TIMESTAMP(gc.hour_no * 3600 + mm.k * 60 + 60)) AS t1
  FROM gc JOIN minutes mm ON ((gc.minutes >> mm.k) & 1) = 1
  WHERE gc.countries > 1
),
s AS (
  SELECT license_id, who, country, t0,
         LAG(country) OVER w AS prev_country, LAG(t1) OVER w AS prev_t1
  FROM g WINDOW w AS (PARTITION BY license_id, who ORDER BY t0, country)
),
j AS (
  SELECT s.license_id, s.who, s.prev_country, s.country, s.t0,
         CAST(FLOOR(EXTRACT(EPOCH FROM s.t0) / 86400) AS BIGINT) AS day_no, p.km,
         GREATEST(CAST(EXTRACT(EPOCH FROM s.t0 - s.prev_t1) AS DOUBLE PRECISION), 0)
           / 3600.0 AS hours
  FROM s JOIN pairs p ON p.a = s.prev_country AND p.b = s.country
),
v AS (
  SELECT * FROM j WHERE km > {_num(config.geo_speed_kmh)} * hours + {_num(config.geo_margin_km)}
),
days AS (
  SELECT license_id, who, day_no, COUNT(*) AS jumps FROM v GROUP BY license_id, who, day_no
  HAVING COUNT(*) >= {int(config.geo_min_jumps)}
),
firsts AS (
  SELECT v.*, days.jumps,
         ROW_NUMBER() OVER (PARTITION BY v.license_id, v.who, v.day_no ORDER BY v.t0, v.country)
           AS nth
  FROM v JOIN days
    ON days.license_id = v.license_id AND days.who = v.who AND days.day_no = v.day_no
)
SELECT license_id, who, day_no, prev_country, country, t0, km, hours, jumps
FROM firsts WHERE nth <= {EVIDENCE_ITEMS}
ORDER BY license_id, who, day_no, t0, country"""


_BODIES: dict[str, Callable[[AntipiracySettings], str]] = {
    "multi_ip": _multi_ip,
    "concurrent_sessions": _concurrent,
    "round_the_clock": _round_the_clock,
    "burst": _burst,
    "geographic_spread": _geographic,
}


def render(
    detector: str,
    since: datetime,
    until: datetime,
    config: AntipiracySettings,
    dialect: Dialect = "duckdb",
    *,
    base: str | None = None,
) -> str:
    """The SQL of one detector over ``[since, until)``: one SELECT, the same text for both
    dialects. Standalone, it starts with the shared pre-aggregation (``ev``) over
    ``usage``; with ``base`` (a table holding :func:`shared_stage`'s result, as
    :func:`scan` makes), it reads that instead."""
    if base is None:
        _ts(since), _ts(until)  # aware datetimes only
        ev = _base(since, until, config, dialect)
    else:
        ev = f"SELECT * FROM {base}"
    return f"WITH ev AS (\n{ev}\n),\n{_SEATS},\n{_BODIES[detector](config)}"


def shared_stage(
    since: datetime, until: datetime, config: AntipiracySettings, dialect: Dialect = "duckdb"
) -> list[str]:
    """The statements that materialise the scan's shared pre-aggregation as the temporary
    table :data:`BASE` (and, in PostgreSQL, give the planner its statistics)."""
    statements = [
        f"DROP TABLE IF EXISTS {BASE}",
        f"CREATE TEMPORARY TABLE {BASE} AS\n{_base(since, until, config, dialect)}",
    ]
    if dialect == "postgres":
        statements.append(f"ANALYZE {BASE}")
    return statements


# -- rows → findings -------------------------------------------------------------------


def _day(day_no: int) -> tuple[datetime, datetime]:
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day_no))
    return start, start + timedelta(days=1)


def _seconds(n: int, unit: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(n) * unit)


def _finding(
    license_id: str, detector: str, ratio: float, start: datetime, end: datetime, **evidence: Any
) -> Finding:
    return Finding(
        license_id=license_id,
        detector=detector,
        severity=severity(detector, ratio),
        confidence=confidence(ratio),
        window_start=start,
        window_end=end,
        evidence=json.loads(json.dumps(evidence, default=str)),
    )


def _multi_ip_findings(rows: Sequence[Sequence[Any]], config: AntipiracySettings) -> list[Finding]:
    groups: dict[tuple[str, int], list[Sequence[Any]]] = defaultdict(list)
    for row in rows:
        groups[(row[0], int(row[1]))].append(row)
    findings = []
    for (license_id, day_no), group in groups.items():
        _, _, places, ips, tier, max_users, allowed = group[0][:7]
        top = [
            {"place": r[7], "requests": int(r[8]), "ips": int(r[9])} for r in group[:EVIDENCE_ITEMS]
        ]
        findings.append(
            _finding(
                license_id,
                "multi_ip",
                float(places) / float(allowed),
                *_day(day_no),
                places=int(places),
                ips=int(ips),
                tier=tier,
                max_users=int(max_users),
                allowed=float(allowed),
                top_places=top,
            )
        )
    return findings


def _concurrent_findings(
    rows: Sequence[Sequence[Any]], config: AntipiracySettings
) -> list[Finding]:
    unit = int(config.session_bucket_seconds)
    return [
        _finding(
            license_id,
            "concurrent_sessions",
            float(peak) / float(allowed),
            _seconds(first_b, unit),
            _seconds(int(last_b) + 1, unit),
            peak_sessions=int(peak),
            allowed=float(allowed),
            max_users=int(max_users),
            buckets_over=int(buckets),
            bucket_seconds=unit,
        )
        for license_id, max_users, allowed, buckets, peak, first_b, last_b in rows
    ]


def _round_the_clock_findings(
    rows: Sequence[Sequence[Any]], config: AntipiracySettings
) -> list[Finding]:
    return [
        _finding(
            license_id,
            "round_the_clock",
            float(peak) / float(needed),
            *_day(day_no),
            active_hours=int(hours),
            peak_places_in_an_hour=int(peak),
            places_needed=int(needed),
            requests=int(n),
        )
        for license_id, day_no, hours, peak, n, needed in rows
    ]


def _burst_findings(rows: Sequence[Sequence[Any]], config: AntipiracySettings) -> list[Finding]:
    return [
        _finding(
            license_id,
            "burst",
            float(hours) / max(config.burst_min_hours, 1),
            _seconds(first_h, 3600),
            _seconds(int(last_h) + 1, 3600),
            burst_hours=int(hours),
            peak_requests_per_hour=int(peak),
            fastest_mean_interval_s=round(float(fastest), 3),
            clients=int(clients),
        )
        for license_id, hours, peak, fastest, clients, first_h, last_h in rows
    ]


def _geographic_findings(
    rows: Sequence[Sequence[Any]], config: AntipiracySettings
) -> list[Finding]:
    groups: dict[tuple[str, str, int], list[Sequence[Any]]] = defaultdict(list)
    for row in rows:
        groups[(row[0], row[1], int(row[2]))].append(row)
    findings = []
    for (license_id, who, day_no), group in groups.items():
        jumps = [
            {
                "from": r[3],
                "to": r[4],
                "at": r[5].astimezone(UTC).isoformat(),
                "km": round(float(r[6])),
                "hours": round(float(r[7]), 2),
            }
            for r in group[:EVIDENCE_ITEMS]
        ]
        findings.append(
            _finding(
                license_id,
                "geographic_spread",
                int(group[0][8]) / config.geo_min_jumps,
                *_day(day_no),
                user_id=who or None,
                impossible_jumps=int(group[0][8]),
                speed_kmh=config.geo_speed_kmh,
                margin_km=config.geo_margin_km,
                jumps=jumps,
            )
        )
    return findings


_CONVERT: dict[str, Callable[[Sequence[Sequence[Any]], AntipiracySettings], list[Finding]]] = {
    "multi_ip": _multi_ip_findings,
    "concurrent_sessions": _concurrent_findings,
    "round_the_clock": _round_the_clock_findings,
    "burst": _burst_findings,
    "geographic_spread": _geographic_findings,
}


def run_detector(
    con: Connection,
    detector: str,
    since: datetime,
    until: datetime,
    config: AntipiracySettings,
    dialect: Dialect = "duckdb",
    *,
    base: str | None = None,
) -> list[Finding]:
    """One detector's findings over ``[since, until)`` on ``con`` (``base``: see :func:`render`)."""
    rows = con.execute(render(detector, since, until, config, dialect, base=base)).fetchall()
    return _CONVERT[detector](rows, config)


def scan(
    con: Connection,
    since: datetime,
    until: datetime,
    config: AntipiracySettings | None = None,
    dialect: Dialect = "duckdb",
    detectors: Sequence[str] = DETECTORS,
    timings: dict[str, float] | None = None,
) -> list[Finding]:
    """Every detector's findings over ``[since, until)``, by license then detector.

    The shared pre-aggregation is made once (:func:`shared_stage`, temporary tables on
    ``con``, dropped at the end) and every detector reads it. ``timings``, if given,
    receives the seconds of the shared stage (``"shared"``) and of each detector."""
    config = config or AntipiracySettings()
    _ts(since), _ts(until)  # aware datetimes only
    clock = time.perf_counter()
    findings: list[Finding] = []
    try:
        for statement in shared_stage(since, until, config, dialect):
            con.execute(statement)
        if timings is not None:
            timings["shared"] = time.perf_counter() - clock
        for detector in detectors:
            clock = time.perf_counter()
            findings.extend(run_detector(con, detector, since, until, config, dialect, base=BASE))
            if timings is not None:
                timings[detector] = time.perf_counter() - clock
    finally:
        con.execute(f"DROP TABLE IF EXISTS {BASE}")
    findings.sort(key=lambda f: (f.license_id, DETECTORS.index(f.detector), f.window_start))
    return findings


def data_range(con: Connection) -> tuple[datetime, datetime] | None:
    """``[first, last]`` event times of ``usage`` (UTC), or None when it is empty."""
    first, last = con.execute("SELECT MIN(ts), MAX(ts) FROM usage").fetchall()[0]
    if first is None:
        return None
    return first.astimezone(UTC), last.astimezone(UTC) + timedelta(microseconds=1)
