"""Every request to `connectsw serve` is a usage event (Parquet) and an audit record (store).

The server runs as a real subprocess. ``kill -9`` after N answered requests, then
a restart, finds exactly N events; a clean stop (SIGTERM) flushes everything.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store, open_store
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier
from connectsw.licensing.usage import COLUMNS

from .serving import Served, start_server

pytestmark = [pytest.mark.slow, pytest.mark.both_stores]

AGENT = "usage-test/1.0"


def start(settings: Settings, cwd: Path, **server: str) -> Served:
    """The server on the test's data dir and store; SERVER: its ``server.*`` settings."""
    return start_server(
        settings.data_dir,
        cwd=cwd,
        fast_dask=False,
        CONNECTSW_STORE__URL=settings.store_url,
        **{f"CONNECTSW_SERVER__{k.upper()}": v for k, v in server.items()},
    )


def call(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(
        url + path, method=method, headers={"User-Agent": AGENT, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def traffic(url: str, key: str) -> tuple[int, str, str]:
    """Requests of every kind; returns how many, and the session's token and id."""
    status, body = call(url, "POST", "/v1/sessions", {"X-License-Key": key})
    assert status == 201
    token, sid = body["token"], body["sessionId"]
    for _ in range(3):
        path = f"/v1/sessions/{sid}/heartbeat"
        assert call(url, "POST", path, {"X-Session-Token": token})[0] == 200
    both = {"X-License-Key": key, "X-Session-Token": token}
    assert call(url, "GET", "/v1/execution/nope", both)[0] == 404
    assert call(url, "POST", "/v1/sessions", {"X-License-Key": "CSFW-PRO-BAD-KEY"})[0] == 401
    assert call(url, "GET", "/healthz")[0] == 200
    assert call(url, "GET", "/v1/no/such/thing")[0] == 404
    return 8, token, sid


def usage_rows(data: Path) -> list[dict[str, Any]]:
    files = sorted(str(p) for p in (data / "usage").glob("date=*/*.parquet"))
    if not files:
        return []
    with duckdb.connect() as db:
        cur = db.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = true) ORDER BY ts", [files]
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def column_types(data: Path) -> list[tuple[str, str]]:
    with duckdb.connect() as db:
        rows = db.execute(
            "DESCRIBE SELECT * EXCLUDE (date) FROM read_parquet(?, hive_partitioning = true)",
            [str(data / "usage" / "date=*" / "*.parquet")],
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def check_events(rows: list[dict[str, Any]], license_id: str, sid: str, since: float) -> None:
    assert len({r["event_id"] for r in rows}) == len(rows)
    by_endpoint = {(r["method"], r["endpoint"], r["status"]): r for r in rows}
    opened = by_endpoint["POST", "/v1/sessions", 201]
    assert (opened["license_id"], opened["tier"], opened["session_id"]) == (license_id, "PRO", sid)
    assert opened["ip"] == "127.0.0.1" and opened["user_agent"] == AGENT
    assert opened["bytes_out"] > 0 and opened["bytes_in"] == 0 and opened["latency_ms"] > 0
    assert opened["ts"].timestamp() >= since and str(opened["date"]) == opened["ts"].strftime(
        "%Y-%m-%d"
    )
    beat = by_endpoint["POST", "/v1/sessions/{id}/heartbeat", 200]
    assert (beat["license_id"], beat["tier"], beat["session_id"]) == (license_id, "PRO", sid)
    missing = by_endpoint["GET", "/v1/execution/{id}", 404]
    assert (missing["license_id"], missing["session_id"]) == (license_id, sid)
    refused = by_endpoint["POST", "/v1/sessions", 401]
    assert refused["license_id"] is None and refused["session_id"] is None
    assert ("GET", "/healthz", 200) in by_endpoint
    assert ("GET", "unmatched", 404) in by_endpoint


def no_secret_anywhere(data: Path, *secrets: str) -> None:
    for path in data.rglob("*"):
        if path.is_file() and not path.name.startswith("connectsw.db"):
            blob = path.read_bytes()
            assert not any(s.encode() in blob for s in secrets), path


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings.store_url)


def issue(settings: Settings, store: Store) -> tuple[str, str]:
    licenses = Licenses(store, license_secret(settings), settings.licensing.tiers)
    record, key = licenses.issue(Tier.PRO, "a@example.com")
    return record.id, key


def test_kill_9_loses_no_answered_request(settings: Settings, store: Store, tmp_path: Path) -> None:
    license_id, key = issue(settings, store)
    since = time.time()
    # Nothing is compacted while it runs: the events are only in the log when it dies.
    server = start(settings, tmp_path, usage_segment_events="100000")
    n, token, sid = traffic(server.url, key)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    assert usage_rows(settings.data_dir) == []
    server = start(settings, tmp_path)  # recovers the dead server's log at startup
    try:
        rows = usage_rows(settings.data_dir)
        assert len(rows) == n
        assert column_types(settings.data_dir) == list(COLUMNS)
        check_events(rows, license_id, sid, since)
        audit = store.audit_records(limit=100)
        assert sorted(a.event_id for a in audit) == sorted(r["event_id"] for r in rows)
        mine = store.audit_records(license_id)
        assert len(mine) == 5 and {a.session_id for a in mine} == {sid}
        refused = [a for a in audit if a.status == 401]
        assert [(a.error_code, a.license_id, a.user_agent) for a in refused] == [
            ("invalid_format", None, AGENT)
        ]
        no_secret_anywhere(settings.data_dir, key.rsplit("-", 1)[1], token)
    finally:
        server.stop(20, strict=True)


def test_a_clean_stop_flushes_every_event(settings: Settings, store: Store, tmp_path: Path) -> None:
    license_id, key = issue(settings, store)
    since = time.time()
    server = start(settings, tmp_path, usage_segment_events="100000")
    n, _, sid = traffic(server.url, key)
    assert server.stop(20) == 0
    rows = usage_rows(settings.data_dir)
    assert len(rows) == n
    check_events(rows, license_id, sid, since)
    assert len(store.audit_records(limit=100)) == n
    assert list((settings.data_dir / "usage-log").glob("*.jsonl")) == []


def test_segments_are_compacted_while_serving(
    settings: Settings, store: Store, tmp_path: Path, wait_for: Any
) -> None:
    """Every N events (here 3) a segment becomes Parquet and audit rows, without a stop."""
    _, key = issue(settings, store)
    server = start(settings, tmp_path, usage_segment_events="3", usage_flush_seconds="0.2")
    try:
        n, _, _ = traffic(server.url, key)
        wait_for(lambda: len(usage_rows(settings.data_dir)) >= n - n % 3)
        wait_for(lambda: len(store.audit_records(limit=100)) == n)  # the flush: all of them
    finally:
        assert server.stop(20) == 0
    assert len(usage_rows(settings.data_dir)) == n
