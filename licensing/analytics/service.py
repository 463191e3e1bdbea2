"""The analytics operations the CLI and the admin API share, one function each.

``connectsw analytics views|sql|import|report``, ``connectsw antipiracy scan`` and
``/v1/admin/analytics/...`` (web/admin_analytics.py) call these, so both answer the
same JSON from the same rules:

- :func:`views_json`: the documented views (:data:`.views.VIEWS`) with their columns;
- :func:`query`: an analyst's SQL through the read-only guard (:mod:`.readonly`), at most
  ``max_rows`` rows; :func:`encode` writes its rows as CSV, JSON or Parquet;
- :func:`import_files`: events (:func:`.ingest.import_events`) and licenses
  (:func:`.ingest.import_licenses`), the result as ``analytics import --json`` prints it;
- :func:`scan`: the detectors' verdicts (:func:`.report.report`) and, with ``apply``, the
  response tiers (:func:`.respond.respond`, once per finding).

Every function blocks (DuckDB, the store, files): the server runs them in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from connectsw.licensing.analytics.ingest import Progress

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from connectsw.conf.settings import Settings
    from connectsw.core.stores import Store
    from connectsw.licensing.analytics.scoring import Verdict

Format = Literal["csv", "json", "parquet"]
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}
"""The media type of each :func:`encode` format (Parquet's is IANA-registered, 2024)."""


def views_json() -> list[dict[str, Any]]:
    """``[{"name", "meaning", "columns": [{"name", "type", "meaning"}]}]``, in README order."""
    from connectsw.licensing.analytics.views import VIEWS

    return [
        {
            "name": v.name,
            "meaning": v.meaning,
            "columns": [{"name": n, "type": t, "meaning": m} for n, t, m in v.columns],
        }
        for v in VIEWS
    ]


@dataclass(frozen=True)
class QueryResult:
    """The last statement's rows; ``truncated`` if it had more than ``max_rows``."""

    table: pa.Table
    truncated: bool


def query(settings: Settings, sql: str, max_rows: int | None = None) -> QueryResult:
    """Run ``sql`` read-only over the views (limits from ``[analytics]``).

    Raises:
        QueryRefused, QueryError, QueryTimeout: as :func:`.readonly.run`.
    """
    from connectsw.licensing.analytics.readonly import run
    from connectsw.licensing.analytics.views import connect

    con = connect(settings)
    try:
        table = run(con, sql, settings.analytics.sql_timeout)
    finally:
        con.close()
    if max_rows is not None and table.num_rows > max_rows:
        return QueryResult(table.slice(0, max_rows), True)
    return QueryResult(table, False)


def encode(table: pa.Table, fmt: Format) -> bytes:
    """``table`` as a CSV (header line, RFC 4180), a JSON array of row objects (indented;
    values JSON cannot hold, such as timestamps, as text) or a Parquet file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "json":
        return (json.dumps(table.to_pylist(), indent=2, default=str) + "\n").encode()
    sink = pa.BufferOutputStream()
    if fmt == "csv":
        pacsv.write_csv(table, sink)
    else:
        pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def import_files(
    settings: Settings,
    events: Sequence[Path] = (),
    licenses: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import ``licenses`` first, then ``events``; ``{"licenses"?: {"rows", "licenses"},
    "events"?: ImportResult.as_dict()}`` (the keys of what was given).

    Raises:
        InvalidImport: nothing given, or a file is missing, unreadable or has invalid
            rows (nothing of that file written).
    """
    from connectsw.licensing.analytics.ingest import InvalidImport, import_events, import_licenses

    if not events and licenses is None:
        raise InvalidImport("nothing to import: give event FILEs and/or --licenses FILE")
    result: dict[str, Any] = {}
    if licenses is not None:
        loaded = import_licenses(settings, licenses)
        result["licenses"] = {"rows": loaded.rows, "licenses": loaded.licenses}
    if events:
        paths = list(events)
        done = (
            import_events(settings, paths, progress) if progress else import_events(settings, paths)
        )
        result["events"] = done.as_dict()
    return result


def usage_connection(
    settings: Settings, data: Path | None = None
) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """DuckDB with ``usage`` (the Parquet under the usage root, hive-partitioned) and
    ``licenses`` (the relational store's), or a ``simulate traffic`` output directory
    ``data``; and the name of the hourly rollup's view (made current first).

    Raises:
        ConfigError: ``data`` has no ``licenses.csv``.
    """
    if data is not None:
        from connectsw.core.errors import ConfigError
        from connectsw.licensing.analytics.evaluate import open_dir
        from connectsw.licensing.analytics.rollup import attach
        from connectsw.licensing.analytics.storage import local_storage

        if not (data / "licenses.csv").is_file():
            raise ConfigError(
                f"--data {data}: no licenses.csv (expected `simulate traffic` output)"
            )
        con = open_dir(data)
        return con, attach(local_storage(data / "usage"), con)
    from connectsw.licensing.analytics.views import scan_connection

    return scan_connection(settings)


@dataclass
class ScanResult:
    """A scan's window ``[since, until)``, its verdicts (most suspicious first) and, when
    the tiers were applied, one outcome per action taken or skipped."""

    since: datetime
    until: datetime
    verdicts: list[Verdict]
    actions: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"since", "until", "licenses": [...], "actions"?: [...]}`` (ISO times)."""
        from connectsw.licensing.analytics.report import to_json

        out = to_json(self.verdicts, self.since, self.until)
        if self.actions is not None:
            out["actions"] = self.actions
        return out


def scan(
    settings: Settings,
    store: Store | None,
    since: str = "7d",
    license_id: str | None = None,
    *,
    apply: bool = False,
    data: Path | None = None,
) -> ScanResult:
    """Run the detectors over ``since`` (``7d``, ``12h``, an ISO date: :func:`.report.
    parse_since`) until now; with ``apply``, take each verdict's response tier through
    ``store`` (reference §3.3; a finding is acted on once).

    Raises:
        ConfigError: ``since`` is not a duration or a date; ``data`` is not a simulator's
            output; ``apply`` with ``data`` or without ``store``.
    """
    from connectsw.core.errors import ConfigError
    from connectsw.licensing.analytics.report import parse_since, report

    if apply and (data is not None or store is None):
        raise ConfigError("--apply acts on this data dir's licenses, not on --data")
    start = parse_since(since)
    until = datetime.now(UTC) + timedelta(seconds=1)
    con, rollup = usage_connection(settings, data)
    try:
        found = report(
            con, start, until, license_id=license_id, config=settings.antipiracy, rollup=rollup
        )
    finally:
        con.close()
    result = ScanResult(start, until, found)
    if apply:
        from connectsw.licensing.analytics.respond import respond

        assert store is not None
        result.actions = respond(found, store, settings)
    return result
