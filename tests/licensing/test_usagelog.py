"""The usage log: append-only JSON-line segments compacted to date-partitioned Parquet.

Compaction is killed (SIGKILL, in a real subprocess) between each of its steps;
the recovery that follows leaves every event exactly once in Parquet and in the
audit log.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store, open_store
from connectsw.licensing.usage import COLUMNS, TS_KEY
from connectsw.licensing.usagelog import UsageLog, compact_segment, recover, segments

DAY1_END_US = 1_780_271_999_000_000  # 2026-05-31T23:59:59Z


def event(n: int, ts_us: int = DAY1_END_US - 5_000_000) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        TS_KEY: ts_us + n,
        "license_id": "CSFW-PRO-ABCDEFGHIJKLM",
        "tier": "PRO",
        "user_id": None,
        "session_id": None,
        "ip": "203.0.113.7",
        "country": None,
        "asn": None,
        "method": "POST",
        "endpoint": "/v1/sessions",
        "status": 201,
        "latency_ms": 1.5,
        "bytes_in": 0,
        "bytes_out": 180,
        "user_agent": "pytest",
        "error_code": None,
    }


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings.store_url)


def read_usage(usage: Path) -> list[tuple[Any, ...]]:
    files = sorted(usage.glob("date=*/*.parquet"))
    if not files:
        return []
    with duckdb.connect() as db:
        return db.execute(
            "SELECT event_id, date FROM read_parquet(?, hive_partitioning = true)",
            [[str(f) for f in files]],
        ).fetchall()


def test_compaction_writes_designs_columns_partitioned_by_utc_date(
    tmp_path: Path, store: Store
) -> None:
    log = UsageLog(tmp_path / "log", segment_events=100, segment_seconds=60)
    events = [event(n, DAY1_END_US + n * 1_000_000) for n in range(-2, 3)]  # around midnight
    for e in events:
        log.append(e)
    batch = log.take(rotate=True)
    assert batch.events == events and batch.rotated
    usage = tmp_path / "usage"
    assert compact_segment(batch.segment.path, usage, store) == 5
    assert not batch.segment.path.exists()
    parts = sorted(p.name for p in usage.iterdir())
    assert parts == ["date=2026-05-31", "date=2026-06-01"]
    with duckdb.connect() as db:
        glob = str(usage / "*" / "*.parquet")
        described = db.execute(
            "DESCRIBE SELECT * EXCLUDE (date) FROM read_parquet(?, hive_partitioning = true)",
            [glob],
        ).fetchall()
        assert [(r[0], r[1]) for r in described] == list(COLUMNS)
        rows = db.execute(
            "SELECT event_id, epoch_us(ts), status, date::VARCHAR FROM"
            " read_parquet(?, hive_partitioning = true) ORDER BY ts",
            [glob],
        ).fetchall()
    assert [r[0] for r in rows] == [e["event_id"] for e in events]
    assert [r[1] for r in rows] == [e[TS_KEY] for e in events]
    assert [r[3] for r in rows] == ["2026-05-31"] * 3 + ["2026-06-01"] * 2
    audited = store.audit_records(limit=10)
    assert sorted(a.event_id for a in audited) == sorted(e["event_id"] for e in events)
    log.close()


def test_a_torn_last_line_is_not_an_event(tmp_path: Path, store: Store) -> None:
    """A write cut short by the kill never reached a response: it was not acknowledged."""
    log = UsageLog(tmp_path / "log", segment_events=100, segment_seconds=60)
    log.append(event(1))
    path = log.take(rotate=True).segment.path
    with open(path, "a") as f:
        f.write(json.dumps(event(2))[:40])
    assert compact_segment(path, tmp_path / "usage", store) == 1
    assert len(read_usage(tmp_path / "usage")) == 1
    log.close()


def test_a_segment_rotates_at_its_event_count(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "log", segment_events=3, segment_seconds=60)
    full = [log.append(event(n)) for n in range(3)]
    assert full == [False, False, True]
    first = log.take()
    assert first.rotated and len(first.events) == 3
    log.append(event(4))
    second = log.take()
    assert not second.rotated and second.segment.path != first.segment.path
    assert segments(tmp_path / "log") == sorted([first.segment.path, second.segment.path])
    log.close()


def test_recovery_leaves_a_live_writers_segment_alone(tmp_path: Path, store: Store) -> None:
    """Another server on the same data dir is writing it (its lock is held)."""
    log = UsageLog(tmp_path / "log", segment_events=100, segment_seconds=60)
    log.append(event(1))
    assert recover(tmp_path / "log", tmp_path / "usage", store) == 0
    assert read_usage(tmp_path / "usage") == []
    log.close()  # a closed (or dead) writer's segment is recovered
    assert recover(tmp_path / "log", tmp_path / "usage", store) == 1
    assert len(read_usage(tmp_path / "usage")) == 1


CRASH = """
import os, sys
from pathlib import Path
from connectsw.core.stores import open_store
from connectsw.licensing import usage, usagelog
step = sys.argv[1]
def die():
    os.kill(os.getpid(), 9)
if step == "before_rename":
    usage.os.replace = lambda a, b: die()
elif step == "after_first_partition":
    real = usagelog.write_parquet
    usagelog.write_parquet = lambda p, e: (real(p, e), die())
elif step == "after_audit":
    class Store:
        def __init__(self, store): self.store = store
        def add_audit_records(self, r): self.store.add_audit_records(r); die()
elif step == "before_audit":
    class Store:
        def add_audit_records(self, r): die()
store = open_store(sys.argv[4])
if step in ("after_audit", "before_audit"):
    store = Store(store) if step == "after_audit" else Store()
usagelog.compact_segment(Path(sys.argv[2]), Path(sys.argv[3]), store)
print("not killed")
"""


@pytest.mark.parametrize(
    "step", ["before_rename", "after_first_partition", "before_audit", "after_audit"]
)
def test_compaction_killed_between_steps_loses_and_duplicates_nothing(
    tmp_path: Path, settings: Settings, store: Store, step: str
) -> None:
    log = UsageLog(tmp_path / "log", segment_events=100, segment_seconds=60)
    events = [event(n, DAY1_END_US + n * 1_000_000) for n in range(-3, 3)]
    for e in events:
        log.append(e)
    path = log.take(rotate=True).segment.path
    usage = tmp_path / "usage"
    if step == "after_audit":  # a part of the batch was audited before (by the writer's flush)
        from connectsw.licensing.usage import audit_record

        store.add_audit_records([audit_record(events[0])])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), step, str(path), str(usage)]
        + [settings.store_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert path.exists()  # the log goes last
    assert recover(tmp_path / "log", usage, store) == len(events)
    assert not path.exists()
    rows = read_usage(usage)
    assert sorted(r[0] for r in rows) == sorted(e["event_id"] for e in events)
    audited = store.audit_records(limit=100)
    assert sorted(a.event_id for a in audited) == sorted(e["event_id"] for e in events)
    # A temporary file left by the kill was replaced by the recovery's own (same name).
    assert all(p.name.endswith(".parquet") for p in usage.rglob("*") if p.is_file())
    log.close()


def test_a_writer_killed_mid_stream_keeps_every_line_it_wrote(tmp_path: Path, store: Store) -> None:
    """The writer's write(2) is in the kernel once it returns: kill -9 loses none of it."""
    script = textwrap.dedent(
        """
        import sys, uuid
        from pathlib import Path
        from connectsw.licensing.usagelog import UsageLog
        log = UsageLog(Path(sys.argv[1]), segment_events=7, segment_seconds=60)
        for n in range(10**9):
            log.append({"event_id": str(n), "ts_us": 1780000000000000 + n, "method": "GET",
                        "endpoint": "/healthz", "status": 200, "latency_ms": 0.1,
                        "ip": "::1", "user_agent": ""})
            if log.full:
                log.take()
            print(n, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = [proc.stdout.readline() for _ in range(50)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = recover(tmp_path / "log", tmp_path / "usage", store)
    ids = {int(r[0]) for r in read_usage(tmp_path / "usage")}
    assert {int(a) for a in acknowledged} <= ids
    assert ids == set(range(len(ids))) and n == len(ids)
