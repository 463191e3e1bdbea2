"""Hand-made usage events as CSV or Parquet files."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectsw.licensing.usage import COLUMNS, arrow_schema

NAMES = [name for name, _ in COLUMNS]


def event(**values: Any) -> dict[str, Any]:
    """One valid event; ``values`` override its columns."""
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "ts": "2026-05-01T10:00:00Z",
        "license_id": "CSFW-PRO-AAAA",
        "tier": "PRO",
        "user_id": "u1",
        "session_id": "s1",
        "ip": "192.0.2.1",
        "country": "FR",
        "asn": 3215,
        "method": "POST",
        "endpoint": "/v1/execute",
        "status": 200,
        "latency_ms": 12.5,
        "bytes_in": 100,
        "bytes_out": 2000,
        "user_agent": "pytest",
    }
    base.update(values)
    return base


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or NAMES
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    from datetime import datetime

    schema = arrow_schema()
    data = {name: [r.get(name) for r in rows] for name in NAMES}
    data["ts"] = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in data["ts"]]
    pq.write_table(pa.Table.from_pydict(data, schema=schema), path)
    return path


@pytest.fixture
def usage_dir(isolated: Path) -> Path:
    return isolated / "usage"
