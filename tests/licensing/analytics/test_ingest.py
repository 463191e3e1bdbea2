"""``analytics import``: validation (all or nothing), dedupe, idempotence, geo fill, compaction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from connectsw.conf.settings import Settings
from connectsw.licensing.analytics import ingest
from connectsw.licensing.analytics.ingest import InvalidImport, import_events, import_licenses
from connectsw.licensing.analytics.storage import Storage, licenses_file, usage_storage
from connectsw.licensing.usage import COLUMNS

from .conftest import event, write_csv, write_parquet


def stored(usage: Path) -> list[tuple]:
    files = sorted(usage.glob("date=*/*.parquet"))
    if not files:
        return []
    return duckdb.sql(
        f"SELECT * FROM read_parquet({[str(f) for f in files]}, hive_partitioning = false)"
        " ORDER BY event_id"
    ).fetchall()


def snapshot(usage: Path) -> dict[str, int]:
    return {str(p.relative_to(usage)): p.stat().st_mtime_ns for p in usage.rglob("*.parquet")}


def test_csv_import_stores_typed_events_partitioned_by_date(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    rows = [
        event(ts="2026-05-01T23:59:59Z"),
        event(ts="2026-05-02T00:00:01+00:00"),
        event(ts="2026-05-02 08:00:00"),
    ]
    result = import_events(settings, [write_csv(tmp_path / "a.csv", rows)])
    assert (result.rows, result.imported, result.duplicates) == (3, 3, 0)
    assert result.dates == ["2026-05-01", "2026-05-02"]
    assert sorted(p.parent.name for p in usage_dir.glob("date=*/*.parquet")) == [
        "date=2026-05-01",
        "date=2026-05-02",
    ]
    files = [str(f) for f in usage_dir.glob("date=*/*.parquet")]
    schema = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet({files}, hive_partitioning = false)"
    ).fetchall()
    assert [(r[0], r[1]) for r in schema] == list(COLUMNS)
    assert len(stored(usage_dir)) == 3


def test_parquet_input(settings: Settings, usage_dir: Path, tmp_path: Path) -> None:
    result = import_events(settings, [write_parquet(tmp_path / "a.parquet", [event(), event()])])
    assert result.imported == 2
    assert len(stored(usage_dir)) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": None}, "event_id: missing"),
        ({"ts": None}, "ts: missing"),
        ({"ts": "yesterday"}, "ts: not a timestamp"),
        ({"status": "abc"}, "status: not an integer"),
        ({"status": 700}, "status: not 100 to 599"),
        ({"status": 42}, "status: not 100 to 599"),
        ({"asn": "AS15169"}, "asn: not an integer"),
        ({"latency_ms": "fast"}, "latency_ms: not a number"),
        ({"latency_ms": -1}, "latency_ms: negative"),
        ({"bytes_in": -5}, "bytes_in: negative"),
        ({"bytes_out": 1.5}, "bytes_out: not an integer"),
        ({"tier": "GOLD"}, "tier: not one of FREE, PRO, BUSINESS, ENTERPRISE"),
        ({"country": "France"}, "country: not an ISO 3166 alpha-2 code"),
        ({"ip": "999.1.1.1"}, "ip: not an IP address"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_written(
    settings: Settings, usage_dir: Path, tmp_path: Path, change: dict, reason: str
) -> None:
    rows = [event(), event(), event(**change)]
    with pytest.raises(InvalidImport) as caught:
        import_events(settings, [write_csv(tmp_path / "a.csv", rows)])
    message = str(caught.value)
    assert message.startswith("1 invalid row(s) of 3, nothing imported: a.csv row 3: ")
    assert reason in message
    assert "\n" not in message
    assert stored(usage_dir) == []


def test_bad_rows_count_and_first_few_reasons(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    rows = [event(status=0) for _ in range(8)] + [event()]
    with pytest.raises(InvalidImport, match=r"^8 invalid row\(s\) of 9, .* row 5: .*; and 3 more$"):
        import_events(settings, [write_csv(tmp_path / "a.csv", rows)])
    assert not list(usage_dir.rglob("*.parquet"))


def test_one_bad_file_of_several_writes_nothing(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "good.csv", [event()])
    bad = write_csv(tmp_path / "bad.csv", [event(ts="never")])
    with pytest.raises(InvalidImport, match="bad.csv row 1: ts: not a timestamp"):
        import_events(settings, [good, bad])
    assert stored(usage_dir) == []


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["event_id", "ts", "licence"], "not event columns: licence"),
        (["event_id", "license_id"], "no ts column"),
        (["ts"], "no event_id column"),
    ],
)
def test_wrong_columns_are_refused(
    settings: Settings, tmp_path: Path, columns: list[str], message: str
) -> None:
    path = write_csv(tmp_path / "a.csv", [event(licence="x")], columns)
    with pytest.raises(InvalidImport, match=message):
        import_events(settings, [path])


def test_missing_or_unreadable_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InvalidImport, match="no such file"):
        import_events(settings, [tmp_path / "nope.csv"])
    garbage = tmp_path / "x.parquet"
    garbage.write_bytes(b"PAR1" + b"\0" * 50)
    with pytest.raises(InvalidImport, match="not readable"):
        import_events(settings, [garbage])


def test_a_utf16_csv_is_read_as_every_user_file_is(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    """A CSV saved as UTF-16 with its byte-order mark (Excel's "Unicode text") is
    imported; before, DuckDB read it as UTF-8 and refused "CSV Error on Line: 1"."""
    path = write_csv(tmp_path / "a.csv", [event(), event()])
    path.write_bytes(path.read_text().encode("utf-16"))
    assert import_events(settings, [path]).imported == 2
    licenses = tmp_path / "licenses.csv"
    licenses.write_bytes("license_id,tier,max_users,status\nL1,PRO,2,active\n".encode("utf-16"))
    assert import_licenses(settings, licenses).rows == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"event_id,ts\n\xff\xfe,2026\n", "not valid UTF-8 (line 2)"),
        ("event_id,ts\n".encode("utf-16-be"), "UTF-16 without a byte-order mark"),
        (b"\xfe\xff" + "event_id,ts\n".encode("utf-16-be"), "big-endian UTF-16"),
        ("event_id,ts\n".encode("utf-32"), "UTF-32"),
    ],
    ids=["bad-utf8", "utf16-without-bom", "utf16-be", "utf32"],
)
def test_an_encoding_duckdb_cannot_read_is_named(
    settings: Settings, tmp_path: Path, data: bytes, expected: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    for load in (lambda: import_events(settings, [path]), lambda: import_licenses(settings, path)):
        with pytest.raises(InvalidImport) as info:
            load()
        message = str(info.value)
        assert message.startswith(f"{path}: ") and expected in message, message
        assert "\n" not in message


def test_reimporting_the_same_file_changes_nothing(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", [event(ts=f"2026-05-0{d}T10:00:00Z") for d in (1, 2, 3)])
    import_events(settings, [path])
    before, files = stored(usage_dir), snapshot(usage_dir)
    again = import_events(settings, [path])
    assert (again.imported, again.duplicates, again.files_written) == (0, 3, 0)
    assert stored(usage_dir) == before
    assert snapshot(usage_dir) == files


def test_dedupe_within_and_across_files_csv_and_parquet(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    a, b, c = event(), event(), event()
    first = import_events(settings, [write_csv(tmp_path / "a.csv", [a, b, {**a, "status": 500}])])
    assert (first.imported, first.duplicates) == (2, 1)
    second = import_events(settings, [write_parquet(tmp_path / "b.parquet", [b, c])])
    assert (second.imported, second.duplicates) == (1, 1)
    rows = stored(usage_dir)
    assert sorted(r[0] for r in rows) == sorted([a["event_id"], b["event_id"], c["event_id"]])
    assert {r[0]: r[11] for r in rows}[a["event_id"]] == 200  # the first one wins


def test_small_files_of_a_date_are_compacted(
    settings: Settings, usage_dir: Path, tmp_path: Path
) -> None:
    for i in range(3):
        import_events(settings, [write_csv(tmp_path / f"{i}.csv", [event(), event()])])
    files = list((usage_dir / "date=2026-05-01").glob("*.parquet"))
    assert len(files) == 1
    assert len(stored(usage_dir)) == 6
    assert not [p for p in usage_dir.rglob("*") if p.name.startswith(".") and p.suffix != ".lock"]


def test_compaction_interrupted_after_the_move_is_finished_by_recovery(
    settings: Settings, usage_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(
        update={"analytics": settings.analytics.model_copy(update={"compact_below_bytes": 0})}
    )
    for i in range(2):
        import_events(settings, [write_csv(tmp_path / f"{i}.csv", [event()])])
    storage = usage_storage(settings)
    calls = []

    def crash(path: str) -> None:
        calls.append(path)
        raise KeyboardInterrupt  # the process dies after the merged file is in place

    monkeypatch.setattr(Storage, "remove", lambda self, path: crash(path))
    with pytest.raises(KeyboardInterrupt):
        ingest.compact(storage, "2026-05-01", 1 << 30)
    assert len(list((usage_dir / "date=2026-05-01").glob("*.parquet"))) == 3  # 2 old + merged
    monkeypatch.undo()
    ingest.recover(usage_storage(settings))
    assert len(list((usage_dir / "date=2026-05-01").glob("*.parquet"))) == 1
    assert len(stored(usage_dir)) == 2


def test_geo_fill_from_the_ip(settings: Settings, usage_dir: Path, tmp_path: Path) -> None:
    rows = [
        event(ip="8.8.8.8", country=None, asn=None),
        event(ip="2a00:1450:4001:80b::200e", country=None, asn=None),  # Google, Germany
        event(ip="8.8.8.8", country="CA", asn=None),  # given values are kept
        event(ip="10.0.0.1", country=None, asn=None),  # private: nowhere
    ]
    result = import_events(settings, [write_csv(tmp_path / "a.csv", rows)])
    by_id = {r[0]: (r[7], r[8]) for r in stored(usage_dir)}
    assert by_id[rows[0]["event_id"]] == ("US", None)  # geoip2fast has no AS numbers
    assert by_id[rows[1]["event_id"]][0] == "DE"
    assert by_id[rows[2]["event_id"]] == ("CA", None)
    assert by_id[rows[3]["event_id"]] == (None, None)
    assert result.geo_filled == 2


def test_licenses_import_merges_and_validates(settings: Settings, tmp_path: Path) -> None:
    cols = ["license_id", "tier", "max_users", "status"]
    first = write_csv(
        tmp_path / "l1.csv",
        [
            {"license_id": "CSFW-PRO-X", "tier": "pro", "max_users": 3, "status": "active"},
            {"license_id": "CSFW-FREE-Y", "tier": "FREE", "max_users": 1, "status": "Suspended"},
        ],
        cols,
    )
    assert import_licenses(settings, first).licenses == 2
    second = write_csv(
        tmp_path / "l2.csv",
        [
            {"license_id": "CSFW-PRO-X", "tier": "BUSINESS", "max_users": 10, "status": "active"},
        ],
        cols,
    )
    assert import_licenses(settings, second).licenses == 2
    rows = duckdb.sql(f"SELECT * FROM '{licenses_file(settings)}' ORDER BY 1").fetchall()
    assert rows == [
        ("CSFW-FREE-Y", "FREE", 1, "suspended"),
        ("CSFW-PRO-X", "BUSINESS", 10, "active"),
    ]
    bad = write_csv(
        tmp_path / "bad.csv",
        [
            {"license_id": "CSFW-PRO-Z", "tier": "GOLD", "max_users": 0, "status": "active"},
        ],
        cols,
    )
    with pytest.raises(
        InvalidImport, match="row 1: tier: not one of .*, max_users: not an integer"
    ):
        import_licenses(settings, bad)
    assert len(duckdb.sql(f"SELECT * FROM '{licenses_file(settings)}'").fetchall()) == 2
    with pytest.raises(InvalidImport, match="missing status"):
        import_licenses(settings, write_csv(tmp_path / "c.csv", [{}], cols[:3]))
