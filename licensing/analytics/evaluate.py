"""Detection and false-positive rates of the detectors on labelled (simulated) traffic.

A sharing license is *detected* by a detector when that detector has a finding on
it; overall, a license is *flagged* when its recommendation is not ``none``.
The goals (issue 7): at least 95 % of sharing licenses flagged, at most 1 % of
honest ones.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from connectsw.conf.settings import AntipiracySettings
from connectsw.licensing.analytics.detectors import DETECTORS, Connection, data_range, scan
from connectsw.licensing.analytics.scoring import verdicts
from connectsw.licensing.usage import COLUMNS

GOAL_DETECTION = 0.95
GOAL_FALSE_POSITIVE = 0.01


def open_dir(directory: Path, threads: int | None = None) -> Any:
    """DuckDB over a simulator's output: ``usage`` (its Parquet, hive-partitioned) and
    ``licenses`` (its licenses.csv) as views."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    pattern = str(directory / "usage" / "date=*" / "*.parquet").replace("'", "''")
    con.execute(
        "CREATE VIEW usage AS SELECT * EXCLUDE (date) FROM "
        f"read_parquet('{pattern}', hive_partitioning = true)"
    )
    licenses = str(directory / "licenses.csv").replace("'", "''")
    con.execute(
        "CREATE VIEW licenses AS SELECT license_id, tier, CAST(max_users AS INTEGER) AS max_users,"
        f" status FROM read_csv('{licenses}', header = true, all_varchar = true)"
    )
    return con


def load_postgres(url: str, data: Path) -> Any:
    """PostgreSQL (``url``) with a simulator's output as ``usage`` and ``licenses`` tables
    (dropped and made again): the same relations as :func:`open_dir`, for the detectors'
    ``postgres`` dialect (the benchmark's baseline, and the dialects' equality test).
    Events go in by COPY; ``usage`` is indexed on (license_id, ts) and analysed."""
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
    return con


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["license_id"]: row for row in csv.DictReader(fh)}


def evaluate(
    con: Connection,
    labels: dict[str, dict[str, str]],
    config: AntipiracySettings | None = None,
) -> dict[str, Any]:
    """Rates per detector, per sharing kind and overall, with the licenses missed or
    wrongly flagged."""
    config = config or AntipiracySettings()
    bounds = data_range(con)
    findings = scan(con, *bounds, config) if bounds else []
    flagged = {v.license_id for v in verdicts(findings, config) if v.recommendation != "none"}
    by_detector: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        by_detector[f.detector].add(f.license_id)
    sharing = {k for k, v in labels.items() if v["label"] == "sharing"}
    honest = set(labels) - sharing

    def rate(hit: set[str], of: set[str]) -> float:
        return round(len(hit & of) / len(of), 4) if of else 0.0

    kinds: dict[str, set[str]] = defaultdict(set)
    for k, v in labels.items():
        kinds[v["kind"]].add(k)
    return {
        "licenses": len(labels),
        "sharing": len(sharing),
        "honest": len(honest),
        "overall": {
            "detection_rate": rate(flagged, sharing),
            "false_positive_rate": rate(flagged, honest),
        },
        "detectors": {
            d: {
                "detection_rate": rate(by_detector[d], sharing),
                "false_positive_rate": rate(by_detector[d], honest),
            }
            for d in DETECTORS
        },
        "kinds": {
            kind: {"licenses": len(ids), "flagged": rate(flagged, ids)}
            for kind, ids in sorted(kinds.items())
        },
        "missed": sorted(sharing - flagged),
        "false_positives": sorted(honest & flagged),
        "goals_met": rate(flagged, sharing) >= GOAL_DETECTION
        and rate(flagged, honest) <= GOAL_FALSE_POSITIVE,
    }
