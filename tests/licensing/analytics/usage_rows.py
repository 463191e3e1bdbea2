"""Hand-made usage events in an in-memory DuckDB: ``usage`` and ``licenses`` tables (helpers)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from connectsw.licensing.usage import COLUMNS, arrow_schema

DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
_ids = itertools.count()


def event(
    ts: datetime,
    license_id: str = "L1",
    ip: str = "198.51.100.7",
    asn: int | None = 64500,
    country: str | None = "DE",
    session: str | None = "s1",
    user: str | None = "u1",
    tier: str = "PRO",
    agent: str = "connectsw-cli",
) -> dict[str, Any]:
    return {
        "event_id": f"e{next(_ids)}",
        "ts": ts,
        "license_id": license_id,
        "tier": tier,
        "user_id": user,
        "session_id": session,
        "ip": ip,
        "country": country,
        "asn": asn,
        "method": "GET",
        "endpoint": "/v1/status",
        "status": 200,
        "latency_ms": 3.0,
        "bytes_in": 10,
        "bytes_out": 100,
        "user_agent": agent,
    }


def every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out = []
    while start < end:
        out.append(start)
        start += step
    return out


def make_db(
    events: Iterable[dict[str, Any]], licenses: Iterable[tuple[str, str, int, str]] = ()
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE usage (" + ", ".join(f"{n} {t}" for n, t in COLUMNS) + ")")
    con.execute(
        "CREATE TABLE licenses"
        " (license_id VARCHAR, tier VARCHAR, max_users INTEGER, status VARCHAR)"
    )
    events = list(events)
    if events:
        rows = pa.Table.from_pylist(events, schema=arrow_schema())
        con.register("new_rows", rows)
        con.execute("INSERT INTO usage SELECT * FROM new_rows")
        con.unregister("new_rows")
    lic = list(licenses)
    if lic:
        con.executemany("INSERT INTO licenses VALUES (?, ?, ?, ?)", lic)
    return con
