"""``connectsw antipiracy scan``: run the anti-piracy detectors over the usage events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.render import id_table, line


def usage_connection(state: State, data: Path | None = None) -> tuple[Any, str | None]:
    """DuckDB with ``usage`` (the Parquet under ``DATA_DIR/usage``, hive-partitioned) and
    ``licenses`` (the relational store's), or a simulator's output directory; and the
    name of the hourly rollup's view (made current first)."""
    from connectsw.licensing.analytics.evaluate import open_dir
    from connectsw.licensing.analytics.rollup import attach
    from connectsw.licensing.analytics.storage import local_storage

    if data is not None:
        if not (data / "licenses.csv").is_file():
            from connectsw.core.errors import ConfigError

            raise ConfigError(
                f"--data {data}: no licenses.csv (expected `simulate traffic` output)"
            )
        con = open_dir(data)
        return con, attach(local_storage(data / "usage"), con)
    from connectsw.licensing.analytics.views import scan_connection

    return scan_connection(state.settings)


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
@click.option(
    "--apply",
    "apply_tiers",
    is_flag=True,
    help="Take the recommended response tier for each license (reference §3.3): e-mails"
    " to the outbox, throttle, suspension; a finding is acted on once.",
)
@json_option
@pass_state
def scan(
    state: State,
    since: str,
    license_id: str | None,
    data: Path | None,
    apply_tiers: bool,
    as_json: bool,
) -> None:
    """Score every license with findings: flags, evidence, recommendation; with --apply,
    take the recommended response tier."""
    run_scan(state, since, license_id, data, apply_tiers, as_json)


def run_scan(
    state: State,
    since: str,
    license_id: str | None,
    data: Path | None,
    apply_tiers: bool,
    as_json: bool,
) -> None:
    """``antipiracy scan`` (and ``analytics report``, which never applies)."""
    from connectsw.licensing.analytics.report import parse_since, report, summary, to_json

    if apply_tiers and data is not None:
        raise click.UsageError("--apply acts on this data dir's licenses, not on --data")
    start = parse_since(since)
    until = datetime.now(UTC) + timedelta(seconds=1)
    con, rollup = usage_connection(state, data)
    found = report(
        con, start, until, license_id=license_id, config=state.settings.antipiracy, rollup=rollup
    )
    if apply_tiers:
        from connectsw.licensing.analytics.respond import respond

        outcomes = respond(found, state.store, state.settings)
        if as_json:
            print_json({**to_json(found, start, until), "actions": outcomes})
            return
        for outcome in outcomes:
            console.print(line(f"{outcome['licenseId']}: tier {outcome['tier']} {outcome['status']}"
                               f" ({outcome['detail']})"))  # fmt: skip
    if as_json:
        print_json(to_json(found, start, until))
        return
    if not found:
        console.print(f"No findings since {start:%Y-%m-%d %H:%M} UTC.")
        return
    table = id_table("license", "score", "recommendation", "flags", "evidence")
    for v in found:
        best = {f.detector: f for f in v.findings}
        evidence = "; ".join(f"{d}: {summary(f.evidence)}" for d, f in best.items())
        rec = v.recommendation + (" (escalate)" if v.escalate else "")
        table.add_row(line(v.license_id), f"{v.score:.2f}", rec, ", ".join(v.flags), line(evidence))
    console.print(table)
