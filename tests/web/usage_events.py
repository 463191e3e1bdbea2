"""Usage events made by hand for the server's analytics tests: recent, as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

#: Addresses in 15 countries: far more places than a PRO license's allowance, at once.
SPREAD = [
    f"{a}.{b}.7.9"
    for a, b in [
        (1, 1), (8, 8), (81, 2), (200, 1), (41, 3), (103, 4), (177, 5), (31, 13),
        (5, 6), (62, 4), (151, 101), (185, 60), (194, 1), (212, 2), (93, 184),
    ]
]  # fmt: skip
COLUMNS = [
    "event_id", "ts", "license_id", "tier", "user_id", "session_id", "ip", "method",
    "endpoint", "status", "latency_ms", "bytes_in", "bytes_out", "user_agent",
]  # fmt: skip


def events(license_id: str, ips: list[str], hours: int = 5) -> list[dict[str, Any]]:
    """Requests of ``license_id`` from each of ``ips``, every hour of the last ``hours``."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "ts": (now - timedelta(hours=h) + timedelta(minutes=i)).isoformat(),
            "license_id": license_id,
            "tier": "PRO",
            "user_id": "u1",
            "session_id": f"s{i}",
            "ip": ip,
            "method": "POST",
            "endpoint": "/v1/execute",
            "status": 200,
            "latency_ms": 5.0,
            "bytes_in": 10,
            "bytes_out": 20,
            "user_agent": "pytest",
        }
        for h in range(1, hours + 1)
        for i, ip in enumerate(ips)
    ]


def as_csv(rows: list[dict[str, Any]], columns: list[str] = COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
