"""``connectsw analytics ...``: import usage events and licenses, read-only SQL, the views."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from connectsw.cli.context import State, console, err_console, json_option, pass_state, print_json
from connectsw.cli.render import line
from connectsw.core.errors import InvalidInput

FORMATS = click.Choice(["table", "csv", "json", "parquet"], case_sensitive=False)
TABLE_ROWS = 1000
"""At most this many rows are drawn as a table (CSV, JSON and Parquet give them all)."""


@click.group("analytics")
def analytics() -> None:
    """Usage analytics: import events, read-only SQL over them, the documented views."""


@analytics.command("import")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--licenses",
    "licenses",
    type=click.Path(path_type=Path),
    help="A CSV or Parquet file of licenses kept elsewhere: license_id, tier, max_users, status.",
)
@json_option
@pass_state
def import_command(
    state: State, files: tuple[Path, ...], licenses: Path | None, as_json: bool
) -> None:
    """Import usage events from CSV or Parquet FILEs (DESIGN.md's columns).

    Every row is validated first (one bad row and nothing is imported); events are
    deduplicated on event_id, so importing a file again changes nothing.
    """
    from connectsw.licensing.analytics.service import import_files

    progress = None if as_json else _progress()
    if progress is None:
        report = import_files(state.settings, files, licenses)
    else:
        with progress as bars:
            report = import_files(state.settings, files, licenses, bars)
    if as_json:
        print_json(report)
        return
    if "licenses" in report:
        got = report["licenses"]
        console.print(
            f"Licenses: {got['rows']} row(s) loaded; {got['licenses']} imported license(s) in all."
        )
    if "events" in report:
        got = report["events"]
        console.print(
            f"Events: {got['rows']} row(s): {got['imported']} imported, {got['duplicates']}"
            f" already stored or repeated; {got['geo_filled']} geo-filled;"
            f" {len(got['dates'])} date(s), {got['files_compacted']} small file(s) compacted."
        )


class _Bars:
    """A rich progress bar per import step, on stderr (``progress(step, done, total)``)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.bars: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self.bars:
            self.bars[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.bars[step], completed=done, total=total)


def _progress() -> _Bars | None:
    return _Bars() if err_console.is_terminal else None


@analytics.command("sql")
@click.argument("query", required=False)
@click.option(
    "--file", "sql_file", type=click.Path(path_type=Path), help="Read the SQL from a file."
)
@click.option(
    "--format",
    "fmt",
    type=FORMATS,
    help="Output format [default: table; with --out, the file name's suffix].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the rows to this file, as --format says or else as its suffix does"
    " (.csv, .json, .parquet); required for parquet.",
)
@pass_state
def sql(
    state: State, query: str | None, sql_file: Path | None, fmt: str | None, out: Path | None
) -> None:
    """Run read-only SQL over the usage views (see `connectsw analytics views`).

    Only SELECT (WITH, DESCRIBE, SUMMARIZE, SHOW) and EXPLAIN run; only the usage data
    can be read; memory, threads and time are limited ([analytics] settings). With
    several statements, the last one's rows are printed.

    With --out FILE the rows are written to FILE (nothing on stdout) in --format, or
    without it in the format of FILE's suffix: a.csv, a.json, a.parquet. The table
    format is only printed: --format table with --out, or --out with another suffix
    and no --format, is refused.
    """
    from connectsw.core import textfiles
    from connectsw.licensing.analytics.readonly import QueryRefused
    from connectsw.licensing.analytics.service import query as run_query

    if (query is None) == (sql_file is None):
        raise QueryRefused(
            'give the SQL as an argument or with --file, not both: analytics sql "SELECT ..."'
        )
    if sql_file is not None:
        try:
            query = textfiles.decode(textfiles.read_bytes(sql_file, 1_048_576))
        except textfiles.TextFileError as exc:
            raise QueryRefused(f"{sql_file}: {exc}") from None
    fmt = _format(fmt, out)
    if fmt == "parquet" and out is None:
        raise QueryRefused("--format parquet needs --out FILE")
    assert query is not None
    _output(run_query(state.settings, query).table, fmt, out)


def _format(fmt: str | None, out: Path | None) -> str:
    """The output format: ``--format``, else ``--out``'s suffix, else the table.

    ``--out`` was ignored without a word when no ``--format`` was given (trial 8b, M1).
    """
    if out is None:
        return (fmt or "table").lower()
    if fmt is None:
        fmt = out.suffix.lower().lstrip(".")
        if fmt not in ("csv", "json", "parquet"):
            raise InvalidInput(
                f"--out {out}: give --format csv, json or parquet, or a file name ending"
                " .csv, .json or .parquet"
            )
    if fmt.lower() == "table":
        raise InvalidInput(
            "--format table is printed, not written to a file: give --format csv, json or"
            " parquet with --out, or leave --out out"
        )
    return fmt.lower()


def _output(table: Any, fmt: str, out: Path | None) -> None:
    from connectsw.licensing.analytics.service import encode

    if fmt in ("parquet", "csv", "json"):
        data = encode(table, fmt)  # type: ignore[arg-type]
        if out is not None:
            _write(out, data)
            err_console.print(line(f"{table.num_rows} row(s) written to {out}"), soft_wrap=True)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        return
    shown = table.slice(0, TABLE_ROWS)
    grid = Table(box=None)
    for name in table.column_names:
        grid.add_column(header=line(name))
    for row in shown.to_pylist():
        grid.add_row(*[line("NULL" if v is None else str(v)) for v in row.values()])
    console.print(grid)
    more = (
        f" (first {TABLE_ROWS} shown; --format csv for all)" if table.num_rows > TABLE_ROWS else ""
    )
    err_console.print(f"{table.num_rows} row(s){more}")


def _write(out: Path, data: bytes) -> None:
    """Write ``--out``; a path the system refuses (a missing directory, a directory, a
    full disk, a name too long) is one line, exit 2 (core/textfiles.py's rule; they were
    exit 70: trial 8b, F9)."""
    from connectsw.core.textfiles import check_path

    with check_path(f"--out {out}", InvalidInput):
        if not out.parent.is_dir():
            raise InvalidInput(f"--out {out}: no directory {out.parent}")
        out.write_bytes(data)


@analytics.command("views")
@json_option
def views(as_json: bool) -> None:
    """The views analysts can query, with their columns."""
    from connectsw.licensing.analytics.service import views_json
    from connectsw.licensing.analytics.views import VIEWS

    if as_json:
        print_json(views_json())
        return
    for view in VIEWS:
        console.print(line((view.name, "bold"), ": ", view.meaning))
        grid = Table("column", "type", "meaning", box=None, padding=(0, 2))
        for name, kind, meaning in view.columns:
            grid.add_row(name, kind, line(meaning))
        console.print(grid)
        console.print()


@analytics.command("report")
@click.option("--since", default="7d", show_default=True, help="Window: 7d, 12h, 2w, or a date.")
@click.option("--license", "license_id", help="Only this license.")
@json_option
@pass_state
def report(state: State, since: str, license_id: str | None, as_json: bool) -> None:
    """Per license: suspicion score, flags, evidence, recommendation (reference §3.2)."""
    from connectsw.cli.antipiracy import scan

    del state  # the scan command takes it from the context itself
    click.get_current_context().invoke(
        scan, since=since, license_id=license_id, data=None, apply_tiers=False, as_json=as_json
    )
