"""The detectors' two dialects agree: the same findings from DuckDB over Parquet (with and
without the hourly rollup) and from the real PostgreSQL server over the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectsw.licensing.analytics import rollup
from connectsw.licensing.analytics.detectors import DETECTORS, data_range, scan
from connectsw.licensing.analytics.evaluate import load_postgres, open_dir
from connectsw.licensing.analytics.simulate import simulate, write
from connectsw.licensing.analytics.storage import local_storage

START = datetime(2026, 3, 2, tzinfo=UTC)


def test_duckdb_and_postgresql_find_the_same(postgres_url: str, tmp_path: Path) -> None:
    write(simulate(50, 3, seed=21, start=START, sharing=0.5), tmp_path)
    duck = open_dir(tmp_path)
    view = rollup.attach(local_storage(tmp_path / "usage"), duck)
    pg = load_postgres(postgres_url, tmp_path)
    first, last = data_range(duck)  # type: ignore[misc]
    for since, until in [(first, last), (first + timedelta(hours=5, minutes=7), last)]:
        expected = scan(duck, since, until)
        assert {f.detector for f in expected} == set(DETECTORS)  # every detector is compared
        assert scan(pg, since, until, dialect="postgres") == expected
        assert scan(duck, since, until, rollup=view) == expected
    pg.close()
