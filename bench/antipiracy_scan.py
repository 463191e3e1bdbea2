"""The full anti-piracy scan (five detectors) in DuckDB over Parquet vs the same SQL in PostgreSQL.

    url=$(scripts/postgres start /tmp/pg-detect)
    .venv/bin/python bench/antipiracy_scan.py --postgres "$url" --licenses 1300 --days 7
    .venv/bin/python bench/antipiracy_scan.py --postgres "$url" --data DIR  # simulator output

Goals (issue 7): DuckDB <= 2 s on 2 cores over 10 million events, >= 10x faster than
PostgreSQL. Events are loaded into PostgreSQL with COPY (CSV via psycopg), indexed on
(license_id, ts) and ANALYZEd; both engines run detectors.scan(): the shared
pre-aggregation into a temporary table, then the five detectors over it (the same SQL
but for how the pre-aggregation groups strings, see detectors._base). The load average
is printed with each engine's time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from connectsw.conf.settings import AntipiracySettings
from connectsw.licensing.analytics.detectors import data_range, scan
from connectsw.licensing.analytics.evaluate import open_dir
from connectsw.licensing.analytics.simulate import simulate, write
from connectsw.licensing.usage import COLUMNS


def timed_scan(
    con: object, bounds: tuple[datetime, datetime], dialect: str
) -> tuple[float, dict[str, float], int]:
    """One full scan (:func:`scan`: the shared pre-aggregation, then the five detectors)."""
    per: dict[str, float] = {}
    start = time.perf_counter()
    found = len(scan(con, *bounds, AntipiracySettings(), dialect, timings=per))  # type: ignore[arg-type]
    return time.perf_counter() - start, per, found


def load_postgres(url: str, data: Path) -> object:
    import psycopg
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    con = psycopg.connect(url, autocommit=True)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("DROP TABLE IF EXISTS usage; DROP TABLE IF EXISTS licenses")
    cols = ", ".join(f"{n} {'DOUBLE PRECISION' if t == 'DOUBLE' else t}" for n, t in COLUMNS)
    con.execute(f"CREATE TABLE usage ({cols})")
    con.execute(
        "CREATE TABLE licenses"
        " (license_id VARCHAR, tier VARCHAR, max_users INTEGER, status VARCHAR)"
    )
    dataset = ds.dataset(data / "usage", format="parquet", partitioning="hive")
    names = [n for n, _ in COLUMNS]
    t = time.perf_counter()
    with (
        con.cursor() as cur,
        cur.copy(f"COPY usage ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy,
    ):
        for batch in dataset.to_batches(columns=names, batch_size=200_000):
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
            copy.write(buf.getvalue())
    with (
        con.cursor() as cur,
        cur.copy("COPY licenses FROM STDIN (FORMAT csv, HEADER true)") as copy,
    ):
        copy.write((data / "licenses.csv").read_bytes())
    con.execute("CREATE INDEX ON usage (license_id, ts)")
    con.execute("ANALYZE usage")
    con.execute("ANALYZE licenses")
    print(
        f"PostgreSQL load (COPY + index + analyze): {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    return con


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--postgres", help="PostgreSQL URL (scripts/postgres start DIR)")
    p.add_argument("--data", type=Path, help="a `simulate traffic` output directory")
    p.add_argument("--licenses", type=int, default=1300)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp(prefix="antipiracy-bench-"))
        t = time.perf_counter()
        made = write(
            simulate(args.licenses, args.days, seed=1, start=datetime(2026, 3, 2, tzinfo=UTC)), data
        )
        print(
            f"simulated {made['events']:,} events in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
    con = open_dir(data, threads=args.threads)
    events = con.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
    bounds = data_range(con)
    assert bounds is not None
    timed_scan(con, bounds, "duckdb")  # warm the file cache
    duck, duck_per, duck_found = min(
        (timed_scan(con, bounds, "duckdb") for _ in range(3)), key=lambda r: r[0]
    )
    print(f"events: {events:,}  threads: {args.threads}  load: {_load()}")
    print(
        f"DuckDB     full scan: {duck:7.2f} s  ({duck_found} findings, load {_load()})  "
        + "  ".join(f"{k}={v:.2f}" for k, v in duck_per.items())
    )
    if args.postgres:
        pg = load_postgres(args.postgres, data)
        pg_time, pg_per, pg_found = timed_scan(pg, bounds, "postgres")
        print(
            f"PostgreSQL full scan: {pg_time:7.2f} s  ({pg_found} findings, load {_load()})  "
            + "  ".join(f"{k}={v:.2f}" for k, v in pg_per.items())
        )
        print(
            f"ratio PostgreSQL / DuckDB: {pg_time / duck:.1f}x"
            "  (goal >= 10x; DuckDB goal <= 2 s at 10M)"
        )
        assert pg_found == duck_found, "both engines must find the same"


if __name__ == "__main__":
    main()
