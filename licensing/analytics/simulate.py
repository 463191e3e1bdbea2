"""Labelled synthetic usage traffic: honest users and sharers of several kinds.

Honest licenses: one person (home, office on weekdays, a phone whose carrier
rotates addresses, CI on a cloud provider, working hours in their own time zone,
lighter weekends, sometimes a trip by plane), and teams on BUSINESS or
ENTERPRISE within their seats (members in one or two countries, offices, shared
CI). Sharing licenses (``kind``): ``class`` (a key passed around a classroom),
``office`` (around an office), ``resale`` (sold to buyers across regions),
``bursts`` (scripted bursts), ``friend_abroad`` (shared with a friend far away).

Everything comes from one ``numpy`` generator seeded with ``seed``: the same
arguments give the same events, licenses and labels. ASNs are from the private
range (64512-65534) and addresses are synthetic.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from connectsw.licensing.analytics.places import CENTROIDS, distance_km

COUNTRIES = sorted(CENTROIDS)
HONEST_KINDS = ("solo", "traveller", "team")
SHARING_KINDS = ("class", "office", "resale", "bursts", "friend_abroad")
CLI = "connectsw-cli"
CI_AGENT = "connectsw-cli (ci)"
ENDPOINTS = ["/v1/status", "/v1/execution", "/v1/execution/{id}", "/v1/memory", "/v1/session"]
US = 1_000_000
HOUR = 3600 * US


def _tz(country: str) -> int:
    """A rough UTC offset in hours from the centroid's longitude."""
    return round(CENTROIDS[country][1] / 15)


@dataclass
class Traffic:
    """The simulator's output: event columns, licenses and labels."""

    columns: dict[str, list[Any] | np.ndarray] = field(default_factory=dict)
    licenses: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)


class _Builder:
    def __init__(self, seed: int, start: datetime, days: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.start_us = int(start.timestamp()) * US
        self.days = days
        self.chunks: list[tuple[np.ndarray, dict[str, Any]]] = []
        self.next_asn = 64512
        self.next_net = 0

    # -- networks ---------------------------------------------------------------------
    def network(self, country: str) -> tuple[int, str]:
        """A new ASN and a /16 in it."""
        self.next_asn = 64512 + (self.next_asn - 64512 + 1) % 1022
        self.next_net += 1
        return self.next_asn, f"{11 + self.next_net // 256 % 200}.{self.next_net % 256}"

    def place(self, country: str, rotating: int = 1) -> dict[str, Any]:
        asn, net = self.network(country)
        pool = [
            f"{net}.{int(self.rng.integers(0, 256))}.{int(self.rng.integers(1, 255))}"
            for _ in range(rotating)
        ]
        return {"country": country, "asn": asn, "ips": np.array(pool, dtype=object)}

    # -- events -----------------------------------------------------------------------
    def emit(
        self,
        lic: dict[str, Any],
        user: str,
        session: str,
        place: dict[str, Any],
        start_us: int,
        end_us: int,
        mean_s: float,
        agent: str = CLI,
        jitter: bool = True,
    ) -> None:
        start_us = max(start_us, self.start_us)  # the window is [start, start + days)
        end_us = min(end_us, self.start_us + self.days * 24 * HOUR)
        span = end_us - start_us
        if span <= 0:
            return
        if jitter:
            n = int(self.rng.poisson(span / (mean_s * US)))
            ts = np.sort(self.rng.integers(start_us, end_us, n))
        else:
            ts = np.arange(start_us, end_us, int(mean_s * US), dtype=np.int64)
        if len(ts) == 0:
            return
        ips = place["ips"]
        ip = ips[(ts // (20 * 60 * US)) % len(ips)] if len(ips) > 1 else np.full(len(ts), ips[0])
        self.chunks.append(
            (
                ts,
                {
                    "license_id": lic["license_id"],
                    "tier": lic["tier"],
                    "user_id": user,
                    "session_id": session,
                    "ip": ip,
                    "country": place["country"],
                    "asn": place["asn"],
                    "user_agent": agent,
                },
            )
        )

    def day_us(self, day: int, local_hour: float, country: str) -> int:
        return self.start_us + day * 24 * HOUR + int((local_hour - _tz(country)) * HOUR)

    # -- honest people ----------------------------------------------------------------
    def person(
        self,
        lic: dict[str, Any],
        user: str,
        country: str,
        office: dict[str, Any] | None = None,
        travel: bool = False,
        rate: float = 1.0,
    ) -> None:
        home = self.place(country)
        office = office or self.place(country)
        phone = self.place(country, rotating=40)
        trip_day = int(self.rng.integers(1, max(2, self.days - 1))) if travel else -1
        abroad = None
        for day in range(self.days):
            weekday = (datetime.fromtimestamp(self.start_us / US, UTC).weekday() + day) % 7
            if day == trip_day:
                dest = self.rng.choice(
                    [c for c in COUNTRIES if (distance_km(country, c) or 0) > 1500]
                )
                dest = str(dest)
                km = distance_km(country, dest) or 0.0
                leave = self.day_us(day, 7.0, country)
                arrive = leave + int((km / 800 + 2) * HOUR)
                self.emit(lic, user, f"{user}-l{day}", home, leave - 2 * HOUR, leave, 240 / rate)
                hotel = self.place(dest)
                abroad = (dest, hotel, self.place(dest, rotating=40))
                self.emit(
                    lic, user, f"{user}-t{day}", hotel, arrive + HOUR, arrive + 6 * HOUR, 240 / rate
                )
                continue
            where = abroad if abroad and day <= trip_day + 2 else None
            if where is not None:
                dest, hotel, roaming = where
                self.emit(
                    lic,
                    user,
                    f"{user}-l{day}",
                    hotel,
                    self.day_us(day, 8, dest),
                    self.day_us(day, 20, dest),
                    180 / rate,
                )
                self.emit(
                    lic,
                    user,
                    f"{user}-p{day}",
                    roaming,
                    self.day_us(day, 8, dest),
                    self.day_us(day, 22, dest),
                    900 / rate,
                )
                continue
            if abroad and day == trip_day + 3:  # fly home: nothing until landing
                dest = where[0] if where else abroad[0]
                abroad = None
                continue
            if weekday < 5:
                self.emit(
                    lic,
                    user,
                    f"{user}-l{day}",
                    home,
                    self.day_us(day, 7, country),
                    self.day_us(day, 8.5, country),
                    240 / rate,
                )
                self.emit(
                    lic,
                    user,
                    f"{user}-l{day}",
                    office,
                    self.day_us(day, 9, country),
                    self.day_us(day, 18, country),
                    120 / rate,
                )
                self.emit(
                    lic,
                    user,
                    f"{user}-e{day}",
                    home,
                    self.day_us(day, 19.5, country),
                    self.day_us(day, 22.5, country),
                    300 / rate,
                )
                self.emit(
                    lic,
                    user,
                    f"{user}-p{day}",
                    phone,
                    self.day_us(day, 8, country),
                    self.day_us(day, 22, country),
                    600 / rate,
                )
            else:
                self.emit(
                    lic,
                    user,
                    f"{user}-w{day}",
                    home,
                    self.day_us(day, 10, country),
                    self.day_us(day, 16, country),
                    900 / rate,
                )
                self.emit(
                    lic,
                    user,
                    f"{user}-p{day}",
                    phone,
                    self.day_us(day, 10, country),
                    self.day_us(day, 22, country),
                    1800 / rate,
                )

    def ci(self, lic: dict[str, Any], user: str, country: str, jobs_per_day: int) -> None:
        cloud = self.place(str(self.rng.choice(["US", "DE", "IE", "NL", country])), rotating=60)
        for day in range(self.days):
            for job in range(int(self.rng.poisson(jobs_per_day))):
                t = self.day_us(day, float(self.rng.uniform(9, 19)), country)
                n = int(self.rng.integers(15, 60))
                self.emit(
                    lic,
                    user,
                    f"{lic['license_id']}-ci{day}-{job}",
                    cloud,
                    t,
                    t + n * 3 * US,
                    3.0,
                    CI_AGENT,
                )

    # -- assembling -------------------------------------------------------------------
    def table_columns(self) -> dict[str, Any]:
        if not self.chunks:
            return {}
        ts = np.concatenate([c[0] for c in self.chunks])
        cols: dict[str, Any] = {"ts": ts}
        for name in (
            "license_id",
            "tier",
            "user_id",
            "session_id",
            "ip",
            "country",
            "asn",
            "user_agent",
        ):
            parts = []
            for t, values in self.chunks:
                v = values[name]
                parts.append(v if isinstance(v, np.ndarray) else np.full(len(t), v, dtype=object))
            cols[name] = np.concatenate(parts)
        n = len(ts)
        order = np.lexsort((cols["license_id"].astype(str), ts))
        cols = {k: v[order] for k, v in cols.items()}
        cols["event_id"] = [f"00000000-0000-4000-8000-{i:012x}" for i in range(n)]
        cols["method"] = np.array(["GET", "POST"], dtype=object)[self.rng.integers(0, 2, n)]
        cols["endpoint"] = np.array(ENDPOINTS, dtype=object)[
            self.rng.integers(0, len(ENDPOINTS), n)
        ]
        cols["status"] = np.where(self.rng.random(n) < 0.97, 200, 429).astype(np.int16)
        cols["latency_ms"] = np.round(self.rng.gamma(2.0, 4.0, n), 2)
        cols["bytes_in"] = self.rng.integers(0, 4096, n)
        cols["bytes_out"] = self.rng.integers(64, 65536, n)
        return cols


def simulate(
    licenses: int,
    days: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    sharing: float = 0.2,
) -> Traffic:
    """``licenses`` licenses over ``days`` UTC days from ``start`` (default: ``days`` ago)."""
    if licenses < 1 or days < 1:
        raise ValueError("licenses and days must be at least 1")
    if start is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=days)
    b = _Builder(seed, start, days)
    rng = b.rng
    out = Traffic()
    for i in range(licenses):
        share = rng.random() < sharing
        kind = str(
            rng.choice(
                SHARING_KINDS if share else HONEST_KINDS, p=None if share else [0.55, 0.2, 0.25]
            )
        )
        country = str(rng.choice(COUNTRIES))
        if kind == "team":
            tier, seats = ("ENTERPRISE", 100) if rng.random() < 0.2 else ("BUSINESS", 10)
        else:
            tier, seats = ("FREE", 1) if rng.random() < 0.3 else ("PRO", 1)
        lic = {
            "license_id": f"CSFW-{tier}-SIM{i:06d}",
            "tier": tier,
            "max_users": seats,
            "status": "active",
        }
        out.licenses.append(lic)
        out.labels.append(
            {
                "license_id": lic["license_id"],
                "label": "sharing" if share else "honest",
                "kind": kind,
            }
        )
        owner = f"{lic['license_id']}-u0"
        if kind == "team":
            members = int(rng.integers(3, seats + 1)) if seats == 10 else int(rng.integers(12, 40))
            second = str(rng.choice(COUNTRIES))
            offices = {country: b.place(country), second: b.place(second)}
            for m in range(members):
                c = country if m % 3 else second
                b.person(lic, f"{lic['license_id']}-u{m}", c, offices[c], rate=0.5)
            b.ci(lic, owner, country, 10)
            continue
        b.person(lic, owner, country, travel=kind == "traveller")
        if tier == "PRO":
            b.ci(lic, owner, country, 4)
        if kind in ("class", "office"):
            room = b.place(country, rotating=1 if kind == "class" else 3)
            people = int(rng.integers(8, 30)) if kind == "class" else int(rng.integers(5, 15))
            for day in range(days):
                weekday = (start.weekday() + day) % 7
                if weekday >= 5:
                    continue
                begin, end = (10.0, 12.5) if kind == "class" else (9.0, 17.5)
                for p in range(people):
                    b.emit(
                        lic,
                        owner,
                        f"{lic['license_id']}-{kind}{day}-{p}",
                        room,
                        b.day_us(day, begin, country),
                        b.day_us(day, end, country),
                        90,
                    )
        elif kind == "resale":
            buyers = int(rng.integers(6, 16))
            for k in range(buyers):
                c = str(rng.choice(COUNTRIES))
                home = b.place(c)
                for day in range(days):
                    b.emit(
                        lic,
                        owner,
                        f"{lic['license_id']}-b{k}-{day}",
                        home,
                        b.day_us(day, 9, c),
                        b.day_us(day, 19, c),
                        150,
                    )
        elif kind == "bursts":
            bot = b.place(str(rng.choice(["US", "DE", "NL", "SG"])), rotating=4)
            for day in range(days):
                for h in rng.choice(24, size=int(rng.integers(6, 14)), replace=False):
                    t = (
                        b.start_us
                        + day * 24 * HOUR
                        + int(h) * HOUR
                        + int(rng.integers(0, 20)) * 60 * US
                    )
                    n = int(rng.integers(150, 900))
                    b.emit(
                        lic,
                        owner,
                        f"{lic['license_id']}-bot{day}-{h}",
                        bot,
                        t,
                        t + int(n * 0.4 * US),
                        0.4,
                        "python-requests/2.32",
                    )
        elif kind == "friend_abroad":
            far = [
                c
                for c in COUNTRIES
                if (distance_km(country, c) or 0) > 3000 and abs(_tz(c) - _tz(country)) <= 8
            ]
            friend = str(rng.choice(far or COUNTRIES))
            fhome, fphone = b.place(friend), b.place(friend, rotating=40)
            for day in range(days):
                b.emit(
                    lic,
                    owner,
                    f"{lic['license_id']}-f{day}",
                    fhome,
                    b.day_us(day, 9, friend),
                    b.day_us(day, 23, friend),
                    200,
                )
                b.emit(
                    lic,
                    owner,
                    f"{lic['license_id']}-fp{day}",
                    fphone,
                    b.day_us(day, 8, friend),
                    b.day_us(day, 23, friend),
                    900,
                )
    out.columns = b.table_columns()
    return out


def to_arrow(traffic: Traffic) -> Any:
    """The events as an Arrow table with :func:`connectsw.licensing.usage.arrow_schema`."""
    import pyarrow as pa

    from connectsw.licensing.usage import arrow_schema

    schema = arrow_schema()
    cols = traffic.columns
    if not cols:
        return schema.empty_table()
    arrays = []
    for f in schema:
        if f.name == "ts":
            arrays.append(pa.array(cols["ts"], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write(traffic: Traffic, out: Path) -> dict[str, Any]:
    """``OUT/usage/date=YYYY-MM-DD/part-0.parquet``, ``OUT/licenses.csv``, ``OUT/labels.csv``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = to_arrow(traffic)
    out.mkdir(parents=True, exist_ok=True)
    usage = out / "usage"
    days = (
        pc.strftime(table["ts"], format="%Y-%m-%d") if table.num_rows else pa.array([], pa.string())
    )
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(days, day))
        target = usage / f"date={day}"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, target / "part-0.parquet", compression="zstd")
    with open(out / "licenses.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["license_id", "tier", "max_users", "status"])
        w.writeheader()
        w.writerows(traffic.licenses)
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["license_id", "label", "kind"])
        w.writeheader()
        w.writerows(traffic.labels)
    return {"events": table.num_rows, "licenses": len(traffic.licenses), "dir": str(out)}
