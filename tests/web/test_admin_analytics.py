"""``/v1/admin/analytics/...`` and ``/v1/admin/outbox`` on a real `connectsw serve`: the
admin token, the same JSON as the CLI, the read-only guard, imports (validation, size
limit), scans with the response tiers (once per finding) and SMTP delivery to a real
SMTP server (aiosmtpd) on loopback. One server and one SMTP server for the module."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller

from tests.cli.test_outbox import Recorder, free_port

from .serving import Served, http, run_cli, start_server
from .usage_events import SPREAD, as_csv, events

pytestmark = pytest.mark.slow

TOKEN = "admin-" + "a" * 40
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MAX_IMPORT = 1_500_000
"""Above the server's 1 MiB for other bodies: an import is streamed to a file."""
SQL_TIMEOUT = 2.0
BASE = "/v1/admin/analytics"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, smtp: tuple[Recorder, int]
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("admin-analytics")
    served = start_server(
        root / "data",
        CONNECTSW_ADMIN_TOKEN=TOKEN,
        CONNECTSW_SERVER__IP_RATE_LIMIT="100000/minute",
        CONNECTSW_SERVER__MAX_IMPORT_BYTES=str(MAX_IMPORT),
        CONNECTSW_SERVER__USAGE_SEGMENT_SECONDS="1",
        CONNECTSW_ANALYTICS__SQL_TIMEOUT=str(SQL_TIMEOUT),
        CONNECTSW_ANTIPIRACY__SCAN_INTERVAL="0",
        CONNECTSW_SMTP__HOST="127.0.0.1",
        CONNECTSW_SMTP__PORT=str(smtp[1]),
        CONNECTSW_SMTP__SECURITY="none",
        CONNECTSW_SMTP__FROM_ADDR="ConnectSW <noreply@example.com>",
    )
    try:
        yield served
    finally:
        assert served.stop(30) == 0


def call(
    server: Served,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = ADMIN,
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body or bytes, headers)."""
    sent = dict(headers or {})
    if body is not None:
        sent["Content-Type"] = "application/json"
    status, got, data = http(method, server.url + path, body, sent, raw)
    kind = got.get("Content-Type", "")
    return status, json.loads(data) if kind.startswith("application/json") else data, got


def refused(result: tuple[int, Any, dict[str, str]]) -> tuple[int, str]:
    status, body, headers = result
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert headers["X-Error-Code"] == body["error"]["code"]
    assert "Traceback" not in body["error"]["message"]
    return status, body["error"]["code"]


def issue(server: Served, email: str) -> str:
    status, body, _ = call(server, "POST", "/v1/admin/licenses", {"tier": "PRO", "email": email})
    assert status == 201, body
    return str(body["id"])


def imported(server: Served, data: bytes) -> dict[str, Any]:
    status, body, _ = call(server, "POST", BASE + "/import", raw=data)
    assert status == 200, body
    return dict(body)


def cli_json(server: Served, *args: str) -> Any:
    out = run_cli([*args, "--json"], server.data, server.data.parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


ENDPOINTS = [
    ("GET", BASE + "/views"),
    ("POST", BASE + "/sql"),
    ("GET", BASE + "/report"),
    ("POST", BASE + "/scan"),
    ("POST", BASE + "/import"),
    ("POST", BASE + "/licenses"),
    ("GET", "/v1/admin/outbox"),
    ("GET", "/v1/admin/outbox/1"),
    ("POST", "/v1/admin/outbox/send"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_without_the_admin_token_every_endpoint_is_401(
    server: Served, method: str, path: str
) -> None:
    body = {"sql": "SELECT 1", "apply": True} if method == "POST" else None
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"X-Admin-Token": "nope"}):
        result = call(server, method, path, body if path.endswith("/sql") else None,
                      headers=headers)  # fmt: skip
        assert refused(result) == (401, "admin_required")
        assert TOKEN not in json.dumps(result[1])


def test_views_are_the_clis(server: Served) -> None:
    status, body, _ = call(server, "GET", BASE + "/views")
    assert status == 200
    assert body == cli_json(server, "analytics", "views")
    assert [v["name"] for v in body][:2] == ["usage", "usage_hourly"]
    assert {"name": "event_id", "type": "VARCHAR"}.items() <= body[0]["columns"][0].items()


def test_sql_in_each_format_with_max_rows(server: Served) -> None:
    query = "SELECT range AS n, 'x' || range AS t FROM range(5)"
    status, rows, headers = call(server, "POST", BASE + "/sql", {"sql": query})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert rows == [{"n": i, "t": f"x{i}"} for i in range(5)]
    assert (headers["X-Row-Count"], headers["X-Rows-Truncated"]) == ("5", "false")

    status, data, headers = call(server, "POST", BASE + "/sql", {"sql": query, "format": "csv"})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert pacsv.read_csv(pa.BufferReader(data)).to_pylist() == rows

    status, data, headers = call(
        server, "POST", BASE + "/sql", {"sql": query, "format": "parquet", "max_rows": 2}
    )
    assert status == 200 and headers["Content-Type"] == "application/vnd.apache.parquet"
    assert pq.read_table(pa.BufferReader(data)).to_pylist() == rows[:2]
    assert (headers["X-Row-Count"], headers["X-Rows-Truncated"]) == ("2", "true")

    # The views are there (empty or not) and the CLI answers the same rows.
    status, rows, _ = call(server, "POST", BASE + "/sql", {"sql": "SELECT 40 + 2 AS answer"})
    assert rows == cli_json_sql(server, "SELECT 40 + 2 AS answer")
    status, rows, _ = call(
        server, "POST", BASE + "/sql", {"sql": "SELECT count(*) AS n FROM licenses"}
    )
    assert status == 200 and isinstance(rows[0]["n"], int)


def cli_json_sql(server: Served, query: str) -> Any:
    out = run_cli(["analytics", "sql", query, "--format", "json"], server.data, server.data.parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


#: Refused kinds also run through the CLI, to see the same line there.
SAME_AS_CLI = {"CREATE TABLE t AS SELECT 1", "ATTACH '/tmp/other.duckdb' AS other",
               "SELECT * FROM read_csv('/etc/passwd')"}  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO licenses VALUES ('x', 'PRO', 1, 'active', 'local')",
        "SELECT 1; DROP VIEW usage",
        "ATTACH '/tmp/other.duckdb' AS other",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "INSTALL httpfs",
        "SET threads = 64",
        "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
    ],
)
def test_sql_refused_kinds(server: Served, query: str) -> None:
    result = call(server, "POST", BASE + "/sql", {"sql": query})
    assert refused(result) == (400, "query_refused")
    message = result[1]["error"]["message"]
    assert message.startswith("refused: ")
    if query in SAME_AS_CLI:
        cli = run_cli(["analytics", "sql", query], server.data, server.data.parent)
        assert cli.returncode == 2 and message in cli.stderr  # the same rule, the same line


def test_sql_errors_timeout_and_bad_bodies(server: Served) -> None:
    assert refused(call(server, "POST", BASE + "/sql", {"sql": "SELEC 1"}))[1] == "query_error"
    assert refused(call(server, "POST", BASE + "/sql", {"sql": "SELECT nope FROM usage"})) == (
        400,
        "query_error",
    )
    started = time.monotonic()
    slow = "SELECT count(*) FROM range(1000000000000) a, range(10) b"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call, server, "POST", BASE + "/sql", {"sql": slow})
        time.sleep(SQL_TIMEOUT / 4)
        # The query runs in a thread: the server answers meanwhile.
        asked = time.monotonic()
        assert call(server, "GET", "/healthz", headers={})[0] == 200
        assert time.monotonic() - asked < SQL_TIMEOUT / 2 and not running.done()
        result = running.result()
    assert refused(result) == (422, "query_timeout")
    assert "analytics.sql_timeout" in result[1]["error"]["message"]
    assert time.monotonic() - started < SQL_TIMEOUT + 20
    for body in (
        {},
        {"sql": ""},
        {"sql": 1},
        {"sql": "SELECT 1", "format": "xml"},
        {"sql": "SELECT 1", "max_rows": 0},
        {"sql": "SELECT 1", "max_rows": 10**9},
        {"sql": "SELECT 1", "extra": True},
    ):
        assert refused(call(server, "POST", BASE + "/sql", body)) == (400, "invalid_request")
    bad_json = call(server, "POST", BASE + "/sql", raw=b"{nope", headers=ADMIN)
    assert refused(bad_json) == (400, "invalid_json")


def test_import_events_is_the_clis_and_idempotent(server: Served, tmp_path: Path) -> None:
    license_id = "CSFW-PRO-" + uuid.uuid4().hex[:16].upper()
    rows = events(license_id, ["192.0.2.1"], hours=2)
    data = as_csv(rows)
    first = imported(server, data)
    assert set(first) == {"events"}
    assert (first["events"]["rows"], first["events"]["imported"]) == (2, 2)
    again = imported(server, data)
    assert (again["events"]["imported"], again["events"]["duplicates"]) == (0, 2)
    # Parquet, by its magic bytes, with the same JSON as `analytics import --json`.
    more = events(license_id, ["192.0.2.2"], hours=2)
    for row in more:
        row["ts"] = datetime.fromisoformat(row["ts"])
    table = pa.Table.from_pylist(more)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    got = imported(server, sink.getvalue().to_pybytes())
    path = tmp_path / "same.parquet"
    pq.write_table(table, path)
    cli = cli_json(server, "analytics", "import", str(path))
    assert got["events"]["imported"] == 2
    nothing_new = {"imported": 0, "duplicates": 2, "dates": [], "files_written": 0}
    assert cli == {"events": {**got["events"], **nothing_new, "files_compacted": 0,
                              "geo_filled": 0}}  # fmt: skip
    status, rows_seen, _ = call(
        server,
        "POST",
        BASE + "/sql",
        {"sql": f"SELECT count(*) AS n FROM usage WHERE license_id = '{license_id}'"},
    )
    assert status == 200 and rows_seen == [{"n": 4}]


def test_invalid_imports_say_the_clis_line(server: Served, tmp_path: Path) -> None:
    license_id = "CSFW-PRO-" + uuid.uuid4().hex[:16].upper()
    rows = events(license_id, ["192.0.2.1", "not-an-ip"], hours=1)
    data = as_csv(rows)
    result = call(server, "POST", BASE + "/import", raw=data)
    assert refused(result) == (400, "invalid_import")
    message = result[1]["error"]["message"]
    assert message.startswith("1 invalid row(s) of 2, nothing imported: body row 2: ip")
    path = tmp_path / "body"
    path.write_bytes(data)
    cli = run_cli(["analytics", "import", str(path)], server.data, server.data.parent)
    assert cli.returncode == 2 and message in cli.stderr
    for bad in (b"", b"just,some\ncsv,text\n", b"PAR1 not really parquet"):
        result = call(server, "POST", BASE + "/import", raw=bad)
        assert refused(result) == (400, "invalid_import")
        assert "/tmp" not in result[1]["error"]["message"]
    # Nothing of the bad file was written.
    status, seen, _ = call(
        server,
        "POST",
        BASE + "/sql",
        {"sql": f"SELECT count(*) AS n FROM usage WHERE license_id = '{license_id}'"},
    )
    assert seen == [{"n": 0}]


def test_an_import_above_the_limit_is_413(server: Served) -> None:
    ips = [f"10.{i // 62500}.{i // 250 % 250}.{i % 250}" for i in range(2100)]
    rows = events("CSFW-PRO-" + uuid.uuid4().hex[:16].upper(), ips)
    big = as_csv(rows)
    assert len(big) > MAX_IMPORT
    assert refused(call(server, "POST", BASE + "/import", raw=big)) == (413, "payload_too_large")
    assert refused(call(server, "POST", BASE + "/licenses", raw=big)) == (
        413,
        "payload_too_large",
    )
    # Below the limit, above the 1 MiB of the other bodies: imported.
    allowed = as_csv(rows[: len(rows) * 4 // 5])
    assert 1_048_576 < len(allowed) <= MAX_IMPORT
    assert imported(server, allowed)["events"]["imported"] == len(rows) * 4 // 5
    # A license this server's store does not hold is flagged but not acted on; the scan
    # of every license goes on.
    status, scanned, _ = call(server, "POST", BASE + "/scan", {"since": "2d", "apply": True})
    assert status == 200, scanned
    mine = [a for a in scanned["actions"] if a["licenseId"] == rows[0]["license_id"]]
    assert [a["status"] for a in mine] == ["skipped"]


def test_import_licenses_then_the_licenses_view(server: Served) -> None:
    data = b"license_id,tier,max_users,status\nCSFW-ENTERPRISE-ELSEWHERE,ENTERPRISE,40,active\n"
    status, body, _ = call(server, "POST", BASE + "/licenses", raw=data)
    assert status == 200 and body["licenses"]["rows"] == 1 and set(body) == {"licenses"}
    status, rows, _ = call(
        server,
        "POST",
        BASE + "/sql",
        {"sql": "SELECT * FROM licenses WHERE license_id = 'CSFW-ENTERPRISE-ELSEWHERE'"},
    )
    assert rows == [
        {
            "license_id": "CSFW-ENTERPRISE-ELSEWHERE",
            "tier": "ENTERPRISE",
            "max_users": 40,
            "status": "active",
            "source": "imported",
        }
    ]
    bad = call(server, "POST", BASE + "/licenses", raw=b"license_id,tier\nX,PRO\n")
    assert refused(bad) == (400, "invalid_import")
    assert bad[1]["error"]["message"].startswith("body: expected the columns license_id")


def test_report_and_scan_with_apply_act_once(server: Served, smtp: tuple[Recorder, int]) -> None:
    email = f"sharer-{uuid.uuid4().hex[:8]}@example.com"
    license_id = issue(server, email)
    imported(server, as_csv(events(license_id, SPREAD)))

    status, report, _ = call(server, "GET", f"{BASE}/report?since=2d&license={license_id}")
    assert status == 200 and "actions" not in report
    [verdict] = report["licenses"]
    assert verdict["license_id"] == license_id and verdict["recommendation"] == "suspend"
    assert {"multi_ip", "geographic_spread"} <= set(verdict["flags"])
    cli = cli_json(server, "analytics", "report", "--since", "2d", "--license", license_id)
    assert cli["licenses"] == report["licenses"]
    assert set(cli) == set(report) == {"since", "until", "licenses"}

    # Without apply, a scan is the report; nothing is sent.
    status, dry, _ = call(server, "POST", BASE + "/scan", {"since": "2d", "license": license_id})
    assert status == 200 and dry["licenses"] == report["licenses"] and "actions" not in dry

    body = {"since": "2d", "license": license_id, "apply": True}
    status, first, _ = call(server, "POST", BASE + "/scan", body)
    assert status == 200
    [action] = first["actions"]
    assert (action["licenseId"], action["tier"], action["status"]) == (license_id, 3, "done")
    status, again, _ = call(server, "POST", BASE + "/scan", body)
    assert [a["status"] for a in again["actions"]] == ["already_done"]
    status, record, _ = call(server, "GET", f"/v1/admin/licenses/{license_id}")
    assert record["status"] == "suspended"
    # The CLI's scan of the same data takes no action either: one rule, one finding key.
    cli = cli_json(server, "antipiracy", "scan", "--since", "2d", "--license", license_id,
                   "--apply")  # fmt: skip
    assert [a["status"] for a in cli["actions"]] == ["already_done"]

    # One e-mail queued for the finding; sent once over SMTP.
    status, queued, _ = call(server, "GET", "/v1/admin/outbox?status=unsent&limit=10000")
    mine = [m for m in queued if m["license_id"] == license_id]
    assert status == 200 and len(mine) == 1 and mine[0]["to"] == email
    status, shown, _ = call(server, "GET", f"/v1/admin/outbox/{mine[0]['id']}")
    assert shown == mine[0] == cli_json(server, "outbox", "show", str(mine[0]["id"]))
    recorder = smtp[0]
    status, sent, _ = call(server, "POST", "/v1/admin/outbox/send", {})
    assert status == 200 and sent["failed"] == 0 and sent["sent"] >= 1
    assert {"id": mine[0]["id"], "to": email, "error": None} in sent["deliveries"]
    delivered = [m for m in recorder.received if m["To"] == email]
    assert len(delivered) == 1 and license_id in delivered[0].get_content()
    # Nothing left to send; a third scan queues nothing new.
    status, nothing, _ = call(server, "POST", "/v1/admin/outbox/send", {"limit": 5})
    assert (status, nothing) == (200, {"sent": 0, "failed": 0, "deliveries": []})
    call(server, "POST", BASE + "/scan", body)
    assert len([m for m in recorder.received if m["To"] == email]) == 1
    status, listed, _ = call(server, "GET", "/v1/admin/outbox")
    assert listed == cli_json(server, "outbox", "list")
    assert [m for m in listed if m["license_id"] == license_id][0]["sent_at"]


def test_bad_scan_report_and_outbox_input(server: Served) -> None:
    for path in (f"{BASE}/report?since=yesterday", f"{BASE}/report?since=7d&since=1d",
                 f"{BASE}/report?since=99999999999999d"):  # fmt: skip
        assert refused(call(server, "GET", path)) == (400, "invalid_request")
    for body in ({"since": "soon"}, {"apply": "yes"}, {"license": 5}, {"extra": 1}):
        assert refused(call(server, "POST", BASE + "/scan", body))[0] == 400
    for path in ("/v1/admin/outbox?status=sent", "/v1/admin/outbox?limit=0",
                 "/v1/admin/outbox?limit=x"):  # fmt: skip
        assert refused(call(server, "GET", path)) == (400, "invalid_request")
    for path in ("/v1/admin/outbox/999999", "/v1/admin/outbox/abc", "/v1/admin/outbox/-1"):
        assert refused(call(server, "GET", path)) == (404, "no_such_resource")
    send = call(server, "POST", "/v1/admin/outbox/send", {"limit": 0})
    assert refused(send) == (400, "invalid_request")


def test_admin_requests_are_usage_events_like_the_others(server: Served) -> None:
    """The usage middleware records these routes too (by template), and the server's
    events reach the analytics views once their segment is compacted."""
    assert call(server, "GET", BASE + "/views")[0] == 200
    query = {
        "sql": "SELECT count(*) AS n FROM usage WHERE endpoint = '/v1/admin/analytics/views'"
        " AND license_id IS NULL"
    }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, rows, _ = call(server, "POST", BASE + "/sql", query)
        assert status == 200
        if rows[0]["n"] >= 1:
            return
        time.sleep(0.5)
    raise AssertionError("the admin request never became a usage event")
