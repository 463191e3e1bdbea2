"""The operations the CLI and the admin API share (licensing/analytics/service.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from connectsw.conf.settings import Settings
from connectsw.core.errors import ConfigError
from connectsw.licensing.analytics.ingest import InvalidImport
from connectsw.licensing.analytics.readonly import QueryRefused
from connectsw.licensing.analytics.service import (
    encode,
    import_files,
    query,
    scan,
    views_json,
)
from connectsw.licensing.analytics.views import VIEWS

from .conftest import event, write_csv


def test_views_json_lists_every_view_and_column() -> None:
    listed = views_json()
    assert [v["name"] for v in listed] == [v.name for v in VIEWS]
    for view, shown in zip(VIEWS, listed, strict=True):
        assert [(c["name"], c["type"], c["meaning"]) for c in shown["columns"]] == list(
            view.columns
        )


def test_encode_each_format_round_trips() -> None:
    when = datetime(2026, 5, 1, 10, tzinfo=UTC)
    table = pa.table({"n": [1, 2], "t": ["a", None], "ts": [when, when]})
    rows = json.loads(encode(table, "json"))
    assert rows == [
        {"n": 1, "t": "a", "ts": "2026-05-01 10:00:00+00:00"},
        {"n": 2, "t": None, "ts": "2026-05-01 10:00:00+00:00"},
    ]
    assert pq.read_table(pa.BufferReader(encode(table, "parquet"))).equals(table)
    csv_rows = pacsv.read_csv(pa.BufferReader(encode(table, "csv"))).to_pylist()
    assert [r["n"] for r in csv_rows] == [1, 2]


def test_query_truncates_at_max_rows_and_keeps_the_guard(settings: Settings) -> None:
    whole = query(settings, "SELECT * FROM range(10)")
    assert (whole.table.num_rows, whole.truncated) == (10, False)
    cut = query(settings, "SELECT * FROM range(10)", max_rows=3)
    assert (cut.table.num_rows, cut.truncated) == (3, True)
    assert not query(settings, "SELECT * FROM range(3)", max_rows=3).truncated
    with pytest.raises(QueryRefused):
        query(settings, "COPY (SELECT 1) TO 'x.csv'")


def test_import_files_reports_what_was_given(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InvalidImport, match="nothing to import"):
        import_files(settings)
    licenses = tmp_path / "l.csv"
    licenses.write_text("license_id,tier,max_users,status\nCSFW-PRO-X,PRO,2,active\n")
    events = write_csv(tmp_path / "e.csv", [event(), event()])
    steps: list[str] = []
    done = import_files(settings, [events], licenses, lambda s, d, t: steps.append(s))
    assert done["licenses"] == {"rows": 1, "licenses": 1}
    assert (done["events"]["rows"], done["events"]["imported"]) == (2, 2)
    assert "deduplicating" in steps
    assert set(import_files(settings, licenses=licenses)) == {"licenses"}


def test_scan_refuses_apply_without_the_store_and_bad_windows(settings: Settings) -> None:
    assert scan(settings, None, "7d").to_json()["licenses"] == []
    assert "actions" not in scan(settings, None).to_json()
    with pytest.raises(ConfigError, match="--apply"):
        scan(settings, None, apply=True)
    with pytest.raises(ConfigError, match="--since"):
        scan(settings, None, "soon")
