"""``analytics import`` throughput from Parquet, against DuckDB's raw partitioned write.

    .venv/bin/python bench/analytics_import.py [--events N] [--days D] [--ips K] [--licenses L]

Generates N synthetic events (DESIGN.md's columns; 1 in 10 without country, so the
geo fill has work) with DuckDB into one Parquet file, then in the same run:

* baseline: DuckDB's own ``COPY (SELECT ...) TO DIR (PARTITION_BY (date))`` of the same
  file (no validation, no dedupe, no geo fill);
* import: ``import_events`` into an empty store (validation, dedupe against nothing,
  geo fill, partitioned write, compaction, the hourly rollup of the anti-piracy scan);
* re-import: the same file again (every event is a duplicate: dedupe against the store).

Prints events/s of each and the ratios. Goal (issue 7): import >= 200,000 events/s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from connectsw.conf.settings import load_settings
from connectsw.licensing.analytics.ingest import import_events


def generate(path: Path, n: int, days: int, ips: int, licenses: int) -> None:
    """``n`` events spread evenly over ``days`` days and ``licenses`` licenses, each with
    three users, a session per user and hour, and the user's address (drawn from ``ips``)
    with its country and ASN missing on one event in ten: traffic shaped like the
    simulator's, so the hourly rollup groups several events per row, as it does on real
    use (one event per row would double its cost)."""
    duckdb.sql(
        f"""COPY (SELECT
            uuid()::VARCHAR AS event_id,
            TIMESTAMPTZ '2026-05-01 00:00:00+00'
                + to_microseconds((i * {days} * 86400000000 // {n})::BIGINT) AS ts,
            'CSFW-PRO-' || lpad((i % {licenses})::VARCHAR, 8, '0') AS license_id,
            ['FREE', 'PRO', 'BUSINESS', 'ENTERPRISE'][1 + i % {licenses} % 4] AS tier,
            'u' || (i % {licenses})::VARCHAR || '-' || (i // {licenses} % 3)::VARCHAR AS user_id,
            's' || (i % {licenses})::VARCHAR || '-' || (i // {licenses} % 3)::VARCHAR || '-'
                || (i * {days} * 24 // {n})::VARCHAR AS session_id,
            (1 + u % {ips} // 65536 % 200)::VARCHAR || '.' || (u % {ips} // 256 % 256)::VARCHAR
                || '.' || (u % {ips} % 256)::VARCHAR || '.7' AS ip,
            CASE WHEN i % 10 = 0 THEN NULL ELSE 'FR' END AS country,
            CASE WHEN i % 10 = 0 THEN NULL ELSE 3215 END::INTEGER AS asn,
            'POST' AS method, '/v1/execute' AS endpoint,
            (CASE WHEN i % 50 = 0 THEN 429 ELSE 200 END)::SMALLINT AS status,
            (i % 1000) / 10.0 AS latency_ms, (i % 4096)::BIGINT AS bytes_in,
            (i % 65536)::BIGINT AS bytes_out, 'connectsw-cli/0.1' AS user_agent
        FROM (SELECT i, (i % {licenses}) * 3 + i // {licenses} % 3 AS u FROM range({n}) t(i)))
        TO '{path}' (FORMAT parquet, COMPRESSION zstd)"""
    )


def cpu() -> float:
    """CPU seconds of this process so far (user + system): on a shared machine, with the
    wall time, what the work costs whatever else runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(source: Path, out: Path) -> float:
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS date FROM read_parquet('{source}'))"
        f" TO '{out}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)"
    )
    con.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--ips", type=int, default=20_000, help="distinct client addresses")
    parser.add_argument("--licenses", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "events.parquet"
        generate(source, args.events, args.days, args.ips, args.licenses)
        settings = load_settings(data_dir=work / "data")
        c = cpu()
        base = baseline(source, work / "raw")
        base_cpu, c = cpu() - c, cpu()
        start = time.perf_counter()
        result = import_events(settings, [source])
        first = time.perf_counter() - start
        first_cpu, c = cpu() - c, cpu()
        start = time.perf_counter()
        again = import_events(settings, [source])
        second = time.perf_counter() - start
        second_cpu = cpu() - c
    assert result.imported == args.events and again.imported == 0
    n = args.events
    print(
        f"{n:,} events over {args.days} days, {args.ips:,} addresses"
        f" ({result.geo_filled:,} geo-filled)"
    )
    print(
        f"baseline (DuckDB COPY ... PARTITION_BY): {base:6.2f} s  {n / base:12,.0f} events/s"
        f"  cpu {base_cpu:6.2f} s"
    )
    print(
        f"import (validate+dedupe+geo+write+rollup): {first:6.2f} s  {n / first:12,.0f} events/s"
        f"  cpu {first_cpu:6.2f} s  ratio {first / base:.2f}x the baseline's time"
        f" ({first_cpu / base_cpu:.2f}x its cpu)"
    )
    print(
        f"re-import (all duplicates):              {second:6.2f} s  {n / second:12,.0f} events/s"
        f"  cpu {second_cpu:6.2f} s  ratio {second / base:.2f}x"
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average: {load} (2 cores; the machine may be shared)")
    print(f"goal >= 200,000 events/s: {'met' if n / first >= 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
