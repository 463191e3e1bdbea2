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
#: Its license keys and ids (``lk``, ``license_id``), also made once per scan.
NAMES = "antipiracy_scan_names"


def _window(since: datetime, until: datetime) -> str:
    return f"u.ts >= {_ts(since)} AND u.ts < {_ts(until)} AND u.license_id IS NOT NULL"


def _automated(config: AntipiracySettings, alias: str) -> str:
    agents = " OR ".join(f"{alias}.user_agent LIKE {_quote(p)}" for p in config.automation_agents)
    return agents or "FALSE"


def _unit(dialect: Dialect, seconds: int) -> str:
    """Whole ``seconds`` since the epoch of ``u.ts``: integer arithmetic in DuckDB."""
    if dialect == "duckdb":
        return f"(epoch_us(u.ts) // {seconds * 1_000_000})"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM u.ts) / {seconds}) AS BIGINT)"


#: The columns of :func:`hourly` (and of the stored rollup), in order.
HOURLY_COLUMNS: tuple[str, ...] = (
    "license_id", "user_id", "session_id", "ip", "country", "asn", "user_agent",
    "hour_no", "day_no", "place", "tier", "n", "t0", "t1", "minutes",
)  # fmt: skip


def hourly(where: str, dialect: Dialect = "duckdb", source: str = "usage") -> str:
    """The hourly pre-aggregation of the events of ``source`` (alias ``u``) that match
    ``where``: one row per license × UTC hour × user × session × IP × country × ASN ×
    user agent (:data:`HOURLY_COLUMNS`), with the highest tier seen, the request count
    ``n``, first and last time ``t0``/``t1``, and ``minutes``, a bit mask (bit k: a
    request in minute k of the hour). ``hour_no``/``day_no`` count hours/days since the
    epoch; ``place`` is the network (see the module's docstring). Nothing in it depends
    on the settings, so it is what :mod:`connectsw.licensing.analytics.rollup` stores.

    The two renderings differ only in how the strings are grouped: PostgreSQL groups by
    the columns; DuckDB by their 64-bit hashes (one ``hash`` per dictionary entry of the
    Parquet column, then integer keys), taking each column's ``ANY_VALUE``: the same
    groups unless two values of one column hash alike within one license and hour."""
    prefix = (
        "CASE WHEN strpos(a.ip, ':') = 0 "
        "THEN left(a.ip, length(a.ip) - strpos(reverse(a.ip), '.')) "
        "WHEN length(a.ip) - length(replace(a.ip, ':', '')) >= 3 "
        "THEN split_part(a.ip, ':', 1) || ':' || split_part(a.ip, ':', 2) || ':' "
        "|| split_part(a.ip, ':', 3) || ':' "
        "ELSE a.ip END"
    )
    strings = ("license_id", "user_id", "session_id", "ip", "user_agent")
    if dialect == "duckdb":
        keys = [f"hash(u.{c})" for c in strings]
        values = [f"ANY_VALUE(u.{c}) AS {c}" for c in strings]
    else:
        keys = [f"u.{c}" for c in strings]
        values = [f"u.{c}" for c in strings]
    return f"""SELECT a.license_id, a.user_id, a.session_id, a.ip, a.country, a.asn, a.user_agent,
       a.hour_no, CAST(FLOOR(a.hour_no / 24.0) AS BIGINT) AS day_no,
       COALESCE(a.country, '') || ':' || COALESCE(CAST(a.asn AS VARCHAR), {prefix}) AS place,
       a.tier, a.n, a.t0, a.t1, a.minutes
FROM (
  SELECT {", ".join(values)}, {_unit(dialect, 3600)} AS hour_no, u.country, u.asn,
         MAX(u.tier) AS tier, COUNT(*) AS n, MIN(u.ts) AS t0, MAX(u.ts) AS t1,
         BIT_OR(CAST(1 AS BIGINT) << CAST(MOD({_unit(dialect, 60)}, 60) AS INTEGER)) AS minutes
  FROM {source} u
  WHERE {where}
  GROUP BY {keys[0]}, {_unit(dialect, 3600)}, {", ".join(keys[1:])}, u.country, u.asn
) a"""


def _hour_no(value: datetime, up: bool) -> int:
    seconds = (value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    whole = int(seconds // 3600)
    return whole + 1 if up and whole * 3600 < seconds else whole


#: The keys :func:`keyed` adds (see :func:`_keys`); the stored rollup has them too.
KEY_COLUMNS: tuple[str, ...] = ("lk", "uk", "sk", "ipk")
#: What the detectors read of each hourly row (with ``automated``, made per scan).
SCAN_COLUMNS: tuple[str, ...] = (
    "license_id", "user_id", "country", "hour_no", "day_no", "place", "tier", "n", "t0", "t1",
    "minutes", *KEY_COLUMNS,
)  # fmt: skip


def keyed(rows: str, dialect: Dialect = "duckdb") -> str:
    """``rows`` (:func:`hourly` rows) with the group keys of :data:`KEY_COLUMNS`."""
    return f"SELECT h.*, {_keys(dialect)}\nFROM (\n{rows}\n) h"


def _base(
    since: datetime,
    until: datetime,
    config: AntipiracySettings,
    dialect: Dialect,
    rollup: str | None = None,
) -> str:
    """The scan's shared stage: the :data:`SCAN_COLUMNS` of the window's :func:`keyed`
    hourly rows, and ``automated`` (1 for a CI user agent, ``antipiracy.automation_agents``).

    With ``rollup`` (a relation of stored hourly rows covering the window, see
    :mod:`connectsw.licensing.analytics.rollup`), the whole hours of the window come
    from it and only the partial hours at its ends from the events. DuckDB reads the
    rollup's stored keys; PostgreSQL makes its own (its keys are the strings)."""
    every = ", ".join((*HOURLY_COLUMNS, *KEY_COLUMNS))
    rows = f"SELECT {every} FROM ({keyed(hourly(_window(since, until), dialect), dialect)}) r"
    first, last = _hour_no(since, up=True), _hour_no(until, up=False)
    if rollup is not None and first < last:
        whole = (
            f"SELECT {{}} FROM {rollup}"
            f" WHERE hour_no >= {first} AND hour_no < {last} AND license_id IS NOT NULL"
        )
        if dialect == "duckdb":
            stored = whole.format(every)
        else:
            own = keyed(whole.format(", ".join(HOURLY_COLUMNS)), dialect)
            stored = f"SELECT {every} FROM ({own}) r"
        edges = (
            f"u.license_id IS NOT NULL AND ((u.ts >= {_ts(since)} AND u.ts < {_ts(_hour(first))})"
            f" OR (u.ts >= {_ts(_hour(last))} AND u.ts < {_ts(until)}))"
        )
        rows = (
            f"{stored}\nUNION ALL\nSELECT {every} FROM ({keyed(hourly(edges, dialect), dialect)}) e"
        )
    return (
        f"SELECT {', '.join('h.' + c for c in SCAN_COLUMNS)},"
        f" CASE WHEN {_automated(config, 'h')} THEN 1 ELSE 0 END AS automated"
        f"\nFROM (\n{rows}\n) h"
    )


def _hour(hour_no: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(hours=hour_no)


def _keys(dialect: Dialect) -> str:
    """The integer keys the detectors group by: in DuckDB the 64-bit hashes of license,
    user (NULL as ''), session and IP (NULL stays NULL), in PostgreSQL the strings."""
    if dialect == "duckdb":
        return (
            "hash(h.license_id) AS lk, hash(COALESCE(h.user_id, '')) AS uk,"
            " CASE WHEN h.session_id IS NOT NULL THEN hash(h.session_id) END AS sk,"
            " CASE WHEN h.ip IS NOT NULL THEN hash(h.ip) END AS ipk"
        )
    return "h.license_id AS lk, COALESCE(h.user_id, '') AS uk, h.session_id AS sk, h.ip AS ipk"


def _names(dialect: Dialect, source: str) -> str:
    """``(lk, license_id)``: each license key's id."""
    pick = "ANY_VALUE" if dialect == "duckdb" else "MIN"
    return f"SELECT lk, {pick}(license_id) AS license_id FROM {source} GROUP BY lk"


#: ``lic``: each license key of the scan with its id and, if known, tier and seats.
_LIC = """lic AS (
  SELECT nm.lk, nm.license_id, s.tier, s.max_users
  FROM names nm LEFT JOIN (
    SELECT license_id, MAX(tier) AS tier, MAX(max_users) AS max_users
    FROM licenses GROUP BY license_id
  ) s ON s.license_id = nm.license_id
)"""
_SEATS = "GREATEST(COALESCE(l.max_users, 1), 1)"


def _tier_threshold(config: AntipiracySettings, column: str) -> str:
    cases = " ".join(
        f"WHEN '{tier.value}' THEN {int(n)}" for tier, n in config.multi_ip_thresholds.items()
    )
    return f"(CASE {column} {cases} ELSE {min(config.multi_ip_thresholds.values())} END)"


def _multi_ip(config: AntipiracySettings) -> str:
    allowed = (
        f"{_tier_threshold(config, 'COALESCE(l.tier, d.ev_tier)')} * {_SEATS}"
        f" * {_num(config.multi_ip_grace)}"
    )
    return f"""pd AS (
  SELECT lk, day_no, place, SUM(n) AS n, COUNT(DISTINCT ipk) AS ips, MAX(tier) AS ev_tier
  FROM ev GROUP BY lk, day_no, place
),
d AS (
  SELECT lk, day_no, COUNT(*) AS places, SUM(ips) AS ips, MAX(ev_tier) AS ev_tier
  FROM pd GROUP BY lk, day_no
),
flagged AS (
  SELECT l.license_id, d.lk, d.day_no, d.places, d.ips, COALESCE(l.tier, d.ev_tier) AS tier,
         {_SEATS} AS max_users, CAST({allowed} AS DOUBLE PRECISION) AS allowed
  FROM d JOIN lic l ON l.lk = d.lk
  WHERE d.places > {allowed}
)
SELECT f.license_id, f.day_no, f.places, f.ips, f.tier, f.max_users, f.allowed,
       pd.place, pd.n, pd.ips
FROM flagged f JOIN pd ON pd.lk = f.lk AND pd.day_no = f.day_no
ORDER BY f.license_id, f.day_no, pd.n DESC, pd.place"""


def _concurrent(config: AntipiracySettings) -> str:
    """Sessions per bucket from the hourly minute masks: per license and hour, one count
    per bucket of the hour (``c0`` ...: sessions with a request in one of the bucket's
    minutes), compared with the allowance in SQL."""
    width = int(config.session_bucket_seconds) // 60
    per_hour = 60 // width
    allowed = f"{_SEATS} * {_num(config.sessions_per_user)} * {_num(config.session_grace)}"
    ks = range(per_hour)
    bits = (1 << width) - 1
    counts = ",\n         ".join(
        f"CAST(SUM(CASE WHEN ((mask >> {k * width}) & {bits}) <> 0 THEN 1 ELSE 0 END) AS BIGINT)"
        f" AS c{k}"
        for k in ks
    )
    over = " + ".join(f"CASE WHEN sh.c{k} > {allowed} THEN 1 ELSE 0 END" for k in ks)
    peak = f"GREATEST({', '.join(f'sh.c{k}' for k in ks)})" if per_hour > 1 else "sh.c0"
    first = " ".join(f"WHEN sh.c{k} > {allowed} THEN {k}" for k in ks)
    last = " ".join(f"WHEN sh.c{k} > {allowed} THEN {k}" for k in reversed(ks))
    return f"""ss AS (
  SELECT lk, hour_no, BIT_OR(minutes) AS mask
  FROM ev WHERE sk IS NOT NULL AND automated = 0
  GROUP BY lk, hour_no, sk
  UNION ALL
  SELECT lk, hour_no, BIT_OR(minutes) AS mask
  FROM ev WHERE sk IS NOT NULL AND automated = 1
  GROUP BY lk, hour_no
),
sh AS (
  SELECT lk, hour_no,
         {counts}
  FROM ss GROUP BY lk, hour_no
),
over AS (
  SELECT l.license_id, {_SEATS} AS max_users, CAST({allowed} AS DOUBLE PRECISION) AS allowed,
         {over} AS buckets,
         {peak} AS peak,
         sh.hour_no * {per_hour} + CASE {first} END AS first_b,
         sh.hour_no * {per_hour} + CASE {last} END AS last_b
  FROM sh JOIN lic l ON l.lk = sh.lk
)
SELECT license_id, MAX(max_users), MAX(allowed), SUM(buckets) AS buckets, MAX(peak) AS peak,
       MIN(first_b) AS first_b, MAX(last_b) AS last_b
FROM over GROUP BY license_id
HAVING SUM(buckets) >= {int(config.session_min_buckets)}
ORDER BY license_id"""


def _round_the_clock(config: AntipiracySettings) -> str:
    return f"""hp AS (
  SELECT lk, day_no, hour_no, COUNT(DISTINCT place) AS places, SUM(n) AS n
  FROM ev GROUP BY lk, day_no, hour_no
),
dd AS (
  SELECT lk, day_no, COUNT(*) AS hours, MAX(places) AS peak_places, SUM(n) AS n
  FROM hp GROUP BY lk, day_no
  HAVING COUNT(*) >= {int(config.round_the_clock_hours)}
)
SELECT l.license_id, dd.day_no, dd.hours, dd.peak_places, dd.n,
       {int(config.round_the_clock_places)} * {_SEATS} AS needed
FROM dd JOIN lic l ON l.lk = dd.lk
WHERE dd.peak_places >= {int(config.round_the_clock_places)} * {_SEATS}
ORDER BY l.license_id, dd.day_no"""


def _burst(config: AntipiracySettings) -> str:
    return f"""bh AS (
  SELECT lk, hour_no, COALESCE(sk, ipk) AS client, SUM(n) AS n,
         CAST(EXTRACT(EPOCH FROM MAX(t1) - MIN(t0)) AS DOUBLE PRECISION) AS span
  FROM ev GROUP BY lk, hour_no, COALESCE(sk, ipk)
),
b AS (
  SELECT * FROM bh
  WHERE n > {int(config.burst_min_requests)}
    AND span / (n - 1) < {_num(config.burst_max_interval)}
),
x AS (
  SELECT lk, COUNT(DISTINCT hour_no) AS hours, MAX(n) AS peak, MIN(span / (n - 1)) AS fastest,
         COUNT(DISTINCT client) AS clients, MIN(hour_no) AS first_h, MAX(hour_no) AS last_h
  FROM b GROUP BY lk
  HAVING COUNT(DISTINCT hour_no) > {int(config.burst_min_hours)}
)
SELECT l.license_id, x.hours, x.peak, x.fastest, x.clients, x.first_h, x.last_h
FROM x JOIN lic l ON l.lk = x.lk
ORDER BY l.license_id"""


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
    """Impossible travel between one user's consecutive uses, by country and UTC hour.

    A user's uses in one country in one hour are one group (its first and last use);
    groups are ordered by first use, and a jump is a change of country between
    consecutive groups, its time the gap between the first group's last use and the
    next one's first (0 when they overlap: two places at once). Only users seen in two
    or more countries are ordered, and distances come from :func:`_far_pairs`."""
    return f"""pairs (a, b, km) AS (VALUES {_far_pairs(config)}),
travellers AS (
  SELECT lk, uk FROM ev
  WHERE country IS NOT NULL AND automated = 0
  GROUP BY lk, uk HAVING MIN(country) <> MAX(country)
),
g AS (
  SELECT ev.lk, ev.uk, MIN(COALESCE(ev.user_id, '')) AS who, ev.country, ev.hour_no,
         MIN(ev.t0) AS t0, MAX(ev.t1) AS t1
  FROM ev JOIN travellers t ON t.lk = ev.lk AND t.uk = ev.uk
  WHERE ev.country IS NOT NULL AND ev.automated = 0
  GROUP BY ev.lk, ev.uk, ev.country, ev.hour_no
),
s AS (
  SELECT lk, uk, who, country, t0,
         LAG(country) OVER w AS prev_country, LAG(t1) OVER w AS prev_t1
  FROM g WINDOW w AS (PARTITION BY lk, uk ORDER BY t0, country)
),
j AS (
  SELECT s.lk, s.uk, s.who, s.prev_country, s.country, s.t0,
         CAST(FLOOR(EXTRACT(EPOCH FROM s.t0) / 86400) AS BIGINT) AS day_no, p.km,
         GREATEST(CAST(EXTRACT(EPOCH FROM s.t0 - s.prev_t1) AS DOUBLE PRECISION), 0)
           / 3600.0 AS hours
  FROM s JOIN pairs p ON p.a = s.prev_country AND p.b = s.country
),
v AS (
  SELECT * FROM j WHERE km > {_num(config.geo_speed_kmh)} * hours + {_num(config.geo_margin_km)}
),
days AS (
  SELECT lk, uk, day_no, COUNT(*) AS jumps FROM v GROUP BY lk, uk, day_no
  HAVING COUNT(*) >= {int(config.geo_min_jumps)}
),
firsts AS (
  SELECT v.*, days.jumps,
         ROW_NUMBER() OVER (PARTITION BY v.lk, v.uk, v.day_no ORDER BY v.t0, v.country) AS nth
  FROM v JOIN days ON days.lk = v.lk AND days.uk = v.uk AND days.day_no = v.day_no
)
SELECT l.license_id, f.who, f.day_no, f.prev_country, f.country, f.t0, f.km, f.hours, f.jumps
FROM firsts f JOIN lic l ON l.lk = f.lk
WHERE f.nth <= {EVIDENCE_ITEMS}
ORDER BY l.license_id, f.who, f.day_no, f.t0, f.country"""


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
    rollup: str | None = None,
) -> str:
    """The SQL of one detector over ``[since, until)``: one SELECT, the same text for both
    dialects. Standalone, it starts with the shared pre-aggregation (``ev``) over
    ``usage``; with ``base`` (a table holding :func:`shared_stage`'s result, as
    :func:`scan` makes), it reads that instead."""
    if base is None:
        _ts(since), _ts(until)  # aware datetimes only
        ev = "AS (\n" + _base(since, until, config, dialect, rollup)
        names = _names(dialect, "ev")
    else:
        ev = f"AS (\nSELECT * FROM {base}"
        names = f"SELECT * FROM {NAMES}"
    return f"WITH ev {ev}\n),\nnames AS (\n{names}\n),\n{_LIC},\n{_BODIES[detector](config)}"


def shared_stage(
    since: datetime,
    until: datetime,
    config: AntipiracySettings,
    dialect: Dialect = "duckdb",
    rollup: str | None = None,
) -> list[str]:
    """The statements that materialise the scan's shared pre-aggregation as the temporary
    table :data:`BASE` (and, in PostgreSQL, give the planner its statistics)."""
    statements = [
        f"DROP TABLE IF EXISTS {BASE}",
        f"DROP TABLE IF EXISTS {NAMES}",
        f"CREATE TEMPORARY TABLE {BASE} AS\n{_base(since, until, config, dialect, rollup)}",
        f"CREATE TEMPORARY TABLE {NAMES} AS {_names(dialect, BASE)}",
    ]
    if dialect == "postgres":
        statements += [f"ANALYZE {BASE}", f"ANALYZE {NAMES}"]
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
    rollup: str | None = None,
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
        for statement in shared_stage(since, until, config, dialect, rollup):
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
        con.execute(f"DROP TABLE IF EXISTS {NAMES}")
    findings.sort(key=lambda f: (f.license_id, DETECTORS.index(f.detector), f.window_start))
    return findings


def data_range(con: Connection) -> tuple[datetime, datetime] | None:
    """``[first, last]`` event times of ``usage`` (UTC), or None when it is empty."""
    first, last = con.execute("SELECT MIN(ts), MAX(ts) FROM usage").fetchall()[0]
    if first is None:
        return None
    return first.astimezone(UTC), last.astimezone(UTC) + timedelta(microseconds=1)
