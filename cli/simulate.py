"""``connectsw simulate traffic``: labelled synthetic usage events for the detectors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from connectsw.cli.context import console, json_option, print_json
from connectsw.core.errors import ConfigError
from connectsw.core.textfiles import check_path


@click.group("simulate")
def simulate_group() -> None:
    """Generate synthetic data: labelled usage traffic."""


@simulate_group.command("traffic")
@click.option(
    "--licenses", "count", type=click.IntRange(1, 1_000_000), default=100, show_default=True
)
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),  # checked below: one line, exit 2
    help="A new or empty directory.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed, same traffic: a whole number, 0 or more.",
)
@click.option("--start", help="First UTC day, YYYY-MM-DD (default: DAYS days ago).")
@click.option(
    "--sharing",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of licenses that are shared.",
)
@json_option
def traffic(
    count: int, days: int, out: Path, seed: int, start: str | None, sharing: float, as_json: bool
) -> None:
    """Write OUT/usage/date=*/ Parquet, OUT/licenses.csv and OUT/labels.csv."""
    from datetime import UTC

    from connectsw.licensing.analytics.simulate import simulate, write

    first = None
    if start is not None:
        try:
            first = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError("--start: expected a date, YYYY-MM-DD") from None
    # Out of range, and paths the system refuses, were exit 70 (trial 8b, F9).
    if seed < 0:
        raise ConfigError(f"--seed {seed}: expected a whole number, 0 or more")
    if not 0 <= sharing <= 1:  # click's FloatRange lets NaN through
        raise ConfigError(f"--sharing {sharing}: expected a number from 0 to 1")
    with check_path(f"--out {out}", ConfigError):  # core/textfiles.py's rule
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: not a directory")
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out}: not empty; choose a new directory")
        result = write(simulate(count, days, seed=seed, start=first, sharing=sharing), out)
    if as_json:
        print_json(result)
    else:
        console.print(f"Wrote {result['events']} events of {result['licenses']} licenses to {out}")
