"""The hourly rollup: the scan reads the same from it as from the events, and it follows
every change of a date's event files (import, compaction), never a threshold's."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import event, write_csv  # noqa: E402

from connectsw.conf.settings import AntipiracySettings, Settings
from connectsw.licensing.analytics import rollup
from connectsw.licensing.analytics.detectors import data_range, scan
from connectsw.licensing.analytics.evaluate import open_dir
from connectsw.licensing.analytics.ingest import import_events
from connectsw.licensing.analytics.simulate import simulate, write
from connectsw.licensing.analytics.storage import local_storage, usage_storage
from connectsw.licensing.analytics.views import scan_connection

START = datetime(2026, 3, 2, tzinfo=UTC)
M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    write(simulate(60, 3, seed=5, start=START, sharing=0.4), out)
    return out


def _rollup_files(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in sorted((root / rollup.ROLLUP_DIR).glob("date=*")):
        found[folder.name] = sorted(p.name for p in folder.glob("*.parquet"))
    return found


def test_the_scan_finds_the_same_from_the_rollup_as_from_the_events(sim: Path) -> None:
    con = open_dir(sim)
    view = rollup.attach(local_storage(sim / "usage"), con)
    assert view == rollup.ROLLUP_VIEW
    first, last = data_range(con)  # type: ignore[misc]
    windows = [
        (first, last),
        # partial hours at both ends: those come from the events
        (first + 17 * M + timedelta(seconds=5), last - 23 * M),
        (first + timedelta(hours=30, minutes=41), first + timedelta(hours=31, minutes=12)),
        (first + timedelta(hours=26), first + timedelta(hours=50)),  # whole hours only
    ]
    for since, until in windows:
        raw = scan(con, since, until)
        assert scan(con, since, until, rollup=view) == raw
    assert scan(con, first, last)  # the simulated sharers are there to find


def test_rollup_files_are_not_read_as_events(sim: Path) -> None:
    con = open_dir(sim)
    before = con.execute("SELECT count(*) FROM usage").fetchone()
    rollup.attach(local_storage(sim / "usage"), con)
    assert con.execute("SELECT count(*) FROM usage").fetchone() == before
    assert con.execute(f"SELECT sum(n) FROM {rollup.ROLLUP_VIEW}").fetchone() == before


def _day_events(day: int, n: int, **values: object) -> list[dict[str, object]]:
    base = datetime(2026, 5, day, 9, tzinfo=UTC)
    return [
        event(
            **{
                "ts": (base + i * M).isoformat().replace("+00:00", "Z"),
                "ip": f"198.51.{i % 200}.{day}",
                "asn": 64600 + i,
                "session_id": f"s{day}-{i % 7}",
                **values,
            }
        )
        for i in range(n)
    ]


def test_import_rolls_up_the_dates_it_wrote_and_only_those(
    settings: Settings, tmp_path: Path
) -> None:
    root = Path(usage_storage(settings).root)
    import_events(
        settings, [write_csv(tmp_path / "a.csv", _day_events(1, 40) + _day_events(2, 40))]
    )
    first = _rollup_files(root)
    assert set(first) == {"date=2026-05-01", "date=2026-05-02"}
    assert all(len(files) == 1 for files in first.values())
    day1 = root / rollup.ROLLUP_DIR / "date=2026-05-01" / first["date=2026-05-01"][0]
    stamp = os.stat(day1).st_mtime_ns

    import_events(settings, [write_csv(tmp_path / "b.csv", _day_events(2, 30, user_id="u2"))])
    second = _rollup_files(root)
    assert second["date=2026-05-01"] == first["date=2026-05-01"]
    assert os.stat(day1).st_mtime_ns == stamp  # untouched
    assert second["date=2026-05-02"] != first["date=2026-05-02"]  # made again, old one gone
    assert len(second["date=2026-05-02"]) == 1

    con, view = scan_connection(settings)
    assert view is not None
    assert con.execute(f"SELECT sum(n) FROM {view}").fetchone() == (110,)
    assert con.execute(f"SELECT count(DISTINCT user_id) FROM {view}").fetchone() == (2,)


def test_a_changed_file_set_is_rolled_up_again_before_a_scan(
    settings: Settings, tmp_path: Path
) -> None:
    root = Path(usage_storage(settings).root)
    import_events(settings, [write_csv(tmp_path / "a.csv", _day_events(1, 20))])
    # a file that arrives by another way (the server's compaction of live events)
    con, _ = scan_connection(settings)
    con.execute(
        "COPY (SELECT * REPLACE (event_id || '-x' AS event_id, 'u9' AS user_id) FROM usage)"
        f" TO '{root}/date=2026-05-01/live.parquet' (FORMAT parquet)"
    )
    con.close()
    con, view = scan_connection(settings)
    assert con.execute(f"SELECT sum(n), count(DISTINCT user_id) FROM {view}").fetchone() == (
        40,
        2,
    )


def test_the_rollup_does_not_depend_on_the_settings(sim: Path) -> None:
    con = open_dir(sim)
    storage = local_storage(sim / "usage")
    view = rollup.attach(storage, con)
    files = _rollup_files(sim / "usage")
    first, last = data_range(con)  # type: ignore[misc]
    quiet = AntipiracySettings(automation_agents=["%"], session_bucket_seconds=600)
    assert scan(con, first, last, quiet, rollup=view) == scan(con, first, last, quiet)
    assert rollup.attach(storage, con) == view
    assert _rollup_files(sim / "usage") == files


def test_a_store_that_cannot_be_written_scans_the_events(tmp_path: Path, sim: Path) -> None:
    copy = tmp_path / "ro"
    (copy / "usage" / "date=2026-03-02").mkdir(parents=True)
    src = next((sim / "usage" / "date=2026-03-02").glob("*.parquet"))
    (copy / "usage" / "date=2026-03-02" / "part-0.parquet").write_bytes(src.read_bytes())
    (copy / "licenses.csv").write_bytes((sim / "licenses.csv").read_bytes())
    (copy / "usage").chmod(0o555)
    try:
        con = open_dir(copy)
        if os.geteuid() == 0:  # root writes anyway: a file where the folder would go
            (copy / "usage").chmod(0o755)
            (copy / "usage" / rollup.ROLLUP_DIR).write_text("not a folder")
        assert rollup.attach(local_storage(copy / "usage"), con) is None
    finally:
        (copy / "usage").chmod(0o755)


def test_the_rollup_made_at_import_is_the_one_made_from_the_files(
    settings: Settings, tmp_path: Path
) -> None:
    rows = _day_events(3, 50) + _day_events(3, 20, user_id=None, country=None, asn=None)
    import_events(settings, [write_csv(tmp_path / "a.csv", rows)])
    storage = usage_storage(settings)
    con, _ = scan_connection(settings)
    [at_import] = rollup.refresh(storage, con, ["2026-05-03"])
    query = "SELECT * FROM read_parquet('{}') ORDER BY ALL"
    made_then = con.execute(query.format(at_import)).fetchall()
    Path(at_import).unlink()
    [again] = rollup.refresh(storage, con, ["2026-05-03"])
    assert again == at_import
    assert con.execute(query.format(again)).fetchall() == made_then
    assert sum(r[11] for r in made_then) == 70  # n
