"""Usage events: the contract between the server, imports and analytics (DESIGN.md).

One event per API request. :data:`COLUMNS` is DESIGN.md's table, with each
column's DuckDB type; :func:`arrow_schema` is the same as Parquet writes it
(``ts`` as µs since the epoch, UTC-adjusted: DuckDB reads TIMESTAMP WITH TIME ZONE;
``status`` INT16: SMALLINT; bytes INT64: BIGINT). Files are hive-partitioned by
the UTC date of ``ts``: ``DATA_DIR/usage/date=YYYY-MM-DD/*.parquet``; the date is
the directory's, not a column of the files.

In the server's append-only log (:mod:`connectsw.licensing.usagelog`) an event is
one JSON object per line with these columns, except that ``ts`` is ``ts_us``
(integer µs since the Unix epoch, UTC), plus ``error_code`` (the response's
stable error code, for the audit record; not a usage column).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectsw.core.stores.audit import AuditRecord

if TYPE_CHECKING:
    import pyarrow as pa

#: DESIGN.md's columns, in order, with their DuckDB types.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "VARCHAR"),
    ("ts", "TIMESTAMP WITH TIME ZONE"),
    ("license_id", "VARCHAR"),
    ("tier", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("session_id", "VARCHAR"),
    ("ip", "VARCHAR"),
    ("country", "VARCHAR"),
    ("asn", "INTEGER"),
    ("method", "VARCHAR"),
    ("endpoint", "VARCHAR"),
    ("status", "SMALLINT"),
    ("latency_ms", "DOUBLE"),
    ("bytes_in", "BIGINT"),
    ("bytes_out", "BIGINT"),
    ("user_agent", "VARCHAR"),
)

USAGE_DIR = "usage"
"""Under the data dir: the Parquet files, ``usage/date=YYYY-MM-DD/``."""

TS_KEY = "ts_us"
"""The log's key for ``ts``: integer microseconds since the Unix epoch (UTC)."""


def arrow_schema() -> pa.Schema:
    """:data:`COLUMNS` as Arrow types."""
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(),
        "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
        "INTEGER": pa.int32(),
        "SMALLINT": pa.int16(),
        "DOUBLE": pa.float64(),
        "BIGINT": pa.int64(),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in COLUMNS])


def utc_date(ts_us: int) -> str:
    """The partition of an event: ``YYYY-MM-DD`` of its time, in UTC."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%d")


def write_parquet(path: Path, events: Sequence[Mapping[str, Any]]) -> None:
    """Write log events as one Parquet file at ``path``, atomically and durably.

    The file is written under a temporary name in the same directory (``.NAME.tmp``,
    which no ``*.parquet`` glob matches), flushed to disk, then renamed over
    ``path``: a reader, or a crash, sees the old file or the new one, never half.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    arrays = []
    for field in schema:
        key = TS_KEY if field.name == "ts" else field.name
        values = [e.get(key) for e in events]
        if field.name == "ts":
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        pq.write_table(table, out, compression="zstd")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def audit_record(event: Mapping[str, Any]) -> AuditRecord:
    """The audit record of a logged request (reference "Audit Logging")."""
    return AuditRecord(
        event_id=event["event_id"],
        ts=datetime.fromtimestamp(event[TS_KEY] // 1_000_000, UTC).replace(
            microsecond=event[TS_KEY] % 1_000_000
        ),
        license_id=event.get("license_id"),
        user_id=event.get("user_id"),
        session_id=event.get("session_id"),
        method=event["method"],
        endpoint=event["endpoint"],
        ip=event.get("ip") or "",
        user_agent=event.get("user_agent") or "",
        status=int(event["status"]),
        latency_ms=float(event["latency_ms"]),
        error_code=event.get("error_code"),
    )
