"""``connectsw antipiracy scan``: run the anti-piracy detectors over the usage events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.render import line


def usage_connection(state: State, data: Path | None = None) -> Any:
    """DuckDB with ``usage`` (the Parquet under ``DATA_DIR/usage``, hive-partitioned) and
    ``licenses`` (the relational store's); or a simulator's output directory."""
    import duckdb
    import pyarrow as pa

    from connectsw.licensing.analytics.evaluate import open_dir
    from connectsw.licensing.usage import COLUMNS, USAGE_DIR

    if data is not None:
        if not (data / "licenses.csv").is_file():
            from connectsw.core.errors import ConfigError

            raise ConfigError(
                f"--data {data}: no licenses.csv (expected `simulate traffic` output)"
            )
        return open_dir(data)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    root = state.settings.data_dir.expanduser() / USAGE_DIR
    if any(root.glob("**/*.parquet")):
        pattern = str(root / "**" / "*.parquet").replace("'", "''")
        cols = ", ".join(name for name, _ in COLUMNS)
        con.execute(
            f"CREATE VIEW usage AS SELECT {cols} FROM "
            f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
        )
    else:
        con.execute("CREATE TABLE usage (" + ", ".join(f"{n} {t}" for n, t in COLUMNS) + ")")
    records = state.store.list_licenses(1_000_000_000)
    licenses = pa.table(
        {
            "license_id": pa.array([r.id for r in records], pa.string()),
            "tier": pa.array([r.tier.value for r in records], pa.string()),
            "max_users": pa.array([r.entitlements.max_users for r in records], pa.int32()),
            "status": pa.array([r.status.value for r in records], pa.string()),
        }
    )
    con.register("licenses_arrow", licenses)
    con.execute("CREATE TABLE licenses AS SELECT * FROM licenses_arrow")
    con.unregister("licenses_arrow")
    return con


@click.group("antipiracy")
def antipiracy() -> None:
    """Anti-piracy: run the detectors of reference §3.2 over the usage events."""


@antipiracy.command("scan")
@click.option(
    "--since", default="7d", show_default=True, help="Window: 7d, 12h, 2w, or an ISO date."
)
@click.option("--license", "license_id", help="Only this license.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A `simulate traffic` output directory instead of the data dir and the store.",
)
@json_option
@pass_state
def scan(
    state: State, since: str, license_id: str | None, data: Path | None, as_json: bool
) -> None:
    """Score every license with findings: flags, evidence, recommendation (no action taken)."""
    from connectsw.licensing.analytics.report import parse_since, report, summary, to_json

    start = parse_since(since)
    until = datetime.now(UTC) + timedelta(seconds=1)
    con = usage_connection(state, data)
    found = report(con, start, until, license_id=license_id, config=state.settings.antipiracy)
    if as_json:
        print_json(to_json(found, start, until))
        return
    if not found:
        console.print(f"No findings since {start:%Y-%m-%d %H:%M} UTC.")
        return
    table = Table("license", "score", "recommendation", "flags", "evidence", box=None)
    for v in found:
        best = {f.detector: f for f in v.findings}
        evidence = "; ".join(f"{d}: {summary(f.evidence)}" for d, f in best.items())
        rec = v.recommendation + (" (escalate)" if v.escalate else "")
        table.add_row(line(v.license_id), f"{v.score:.2f}", rec, ", ".join(v.flags), line(evidence))
    console.print(table)
