"""``connectsw analytics``: the commands end to end, as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from .conftest import event, write_csv, write_parquet


@pytest.fixture
def cli(tmp_path: Path, isolated: Path):
    """tests/cli's runner of the real console script (loaded from its file)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "cli_runner", Path(__file__).parents[2] / "cli" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("cli_runner") or importlib.util.module_from_spec(spec)
    if "cli_runner" not in sys.modules:
        sys.modules["cli_runner"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return module.Cli(tmp_path, isolated)


def test_import_then_sql_in_every_format(cli, tmp_path: Path) -> None:
    events = write_csv(tmp_path / "e.csv", [event(ip="8.8.8.8", country=None), event()])
    more = write_parquet(tmp_path / "e.parquet", [event()])
    first = cli("analytics", "import", events, more, "--json", ok=True).json()
    assert first["events"]["imported"] == 3
    again = cli("analytics", "import", events, ok=True)
    assert "0 imported, 2 already stored" in again.stdout
    table = cli(
        "analytics",
        "sql",
        "SELECT country, count(*) AS n FROM usage GROUP BY 1 ORDER BY 1",
        ok=True,
    )
    assert "FR" in table.stdout and "US" in table.stdout
    as_csv = cli("analytics", "sql", "SELECT count(*) AS n FROM usage", "--format", "csv", ok=True)
    assert as_csv.stdout.splitlines() == ['"n"', "3"]
    as_json = cli(
        "analytics", "sql", "SELECT count(*) AS n FROM usage", "--format", "json", ok=True
    )
    assert json.loads(as_json.stdout) == [{"n": 3}]
    query = tmp_path / "q.sql"
    query.write_text("SELECT license_id, count(*) AS n FROM usage GROUP BY 1")
    out = tmp_path / "out.parquet"
    cli("analytics", "sql", "--file", query, "--format", "parquet", "--out", out, ok=True)
    assert duckdb.sql(f"SELECT n FROM '{out}'").fetchall() == [(3,)]


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["analytics", "sql", "DROP VIEW usage"], 2, "refused: is DROP"),
        (
            ["analytics", "sql", "SELECT * FROM read_csv('/etc/passwd')"],
            2,
            "only the usage data may be read",
        ),
        (["analytics", "sql", "SELECT 1; COPY (SELECT 1) TO 'x.csv'"], 2, "statement 2 is COPY"),
        (["analytics", "sql", "SELECT nope"], 2, "nope"),
        (["analytics", "sql", "SELECT 1", "--format", "parquet"], 2, "needs --out"),
        (["analytics", "sql"], 2, "give the SQL"),
        (["analytics", "import", "missing.csv"], 2, "missing.csv: no such file"),
        (["analytics", "import", "--licenses", "missing.csv"], 2, "missing.csv: no such file"),
    ],
)
def test_errors_are_one_line_with_exit_codes(cli, args: list[str], code: int, text: str) -> None:
    result = cli(*args)
    assert result.returncode == code, str(result)
    assert text in result.error_line()


def test_a_bad_import_writes_nothing(cli, tmp_path: Path, isolated: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [event(), event(ts="soon")])
    message = cli("analytics", "import", bad).error_line()
    assert (
        message
        == "Error: 1 invalid row(s) of 2, nothing imported: bad.csv row 2: ts: not a timestamp"
    )
    assert not list((isolated / "usage").rglob("*.parquet"))


def test_sql_time_limit(cli) -> None:
    cli.env["CONNECTSW_ANALYTICS__SQL_TIMEOUT"] = "0.5"
    result = cli("analytics", "sql", "SELECT count(*) FROM range(1000000000000) a, range(10) b")
    assert result.returncode == 7
    assert "query stopped after 0.5 s" in result.error_line()


def test_licenses_import_and_views(cli, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "l.csv",
        [{"license_id": "CSFW-PRO-X", "tier": "PRO", "max_users": 3, "status": "active"}],
        ["license_id", "tier", "max_users", "status"],
    )
    assert "1 row(s) loaded" in cli("analytics", "import", "--licenses", path, ok=True).stdout
    rows = cli("analytics", "sql", "SELECT * FROM licenses", "--format", "json", ok=True)
    assert json.loads(rows.stdout) == [
        {
            "license_id": "CSFW-PRO-X",
            "tier": "PRO",
            "max_users": 3,
            "status": "active",
            "source": "imported",
        }
    ]
    listed = cli("analytics", "views", "--json", ok=True).json()
    assert [v["name"] for v in listed] == [
        "usage",
        "usage_hourly",
        "license_ips_24h",
        "sessions_concurrent",
        "licenses",
        "learned_patterns",
    ]
    assert "license_ips_24h" in cli("analytics", "views", ok=True).stdout


LONG = "x" * 300  # a name over 255 bytes: ENAMETOOLONG


@pytest.mark.parametrize(
    ("args", "env", "text"),
    [
        (
            ["analytics", "sql", "SELECT 1", "--format", "csv", "--out", "/nonexistent/dir/x.csv"],
            {},
            "--out /nonexistent/dir/x.csv: no directory /nonexistent/dir",
        ),
        (
            ["analytics", "sql", "SELECT 1", "--format", "json", "--out", "{tmp}"],
            {},
            "{tmp}: is a directory",
        ),
        (
            ["analytics", "sql", "SELECT 1", "--format", "parquet", "--out", "/dev/full"],
            {},
            "--out /dev/full: no space left on device",
        ),
        (
            ["analytics", "sql", "SELECT 1", "--format", "csv", "--out", f"{LONG}.csv"],
            {},
            "name too long",
        ),
        (
            ["antipiracy", "scan", "--since", "99999999999d"],
            {},
            "--since 99999999999d: before 1970",
        ),
        (
            ["analytics", "report", "--since", "99999999999999m"],
            {},
            "--since 99999999999999m: before",
        ),
        (["antipiracy", "scan", "--since", "0001-01-01T00:00:00+05:00"], {}, "before 1970-01-01"),
        (
            ["simulate", "traffic", "--licenses", "1", "--days", "1", "--out", "/dev/null"],
            {},
            "--out /dev/null: not a directory",
        ),
        (
            ["simulate", "traffic", "--licenses", "1", "--days", "1", "--out", f"{{tmp}}/{LONG}"],
            {},
            "name too long",
        ),
        (
            [
                "simulate",
                "traffic",
                "--licenses",
                "1",
                "--days",
                "1",
                "--out",
                "{tmp}/s",
                "--seed",
                "-1",
            ],
            {},
            "--seed -1: ",
        ),
        (
            ["simulate", "traffic", "--days", "1", "--out", "{tmp}/s", "--sharing", "nan"],
            {},
            "--sharing nan: ",
        ),
        (
            ["analytics", "sql", "SELECT count(*) FROM usage"],
            {"CONNECTSW_ANALYTICS__USAGE_URL": "s3://bucket/u"},
            "analytics.usage_url: the s3:// file system needs the Python package s3fs",
        ),
        (
            ["antipiracy", "scan"],
            {"CONNECTSW_ANALYTICS__USAGE_URL": "nosuch://bucket/u"},
            "analytics.usage_url: unknown file system 'nosuch://'",
        ),
    ],
)
def test_bad_paths_and_numbers_are_one_line_exit_2(
    cli, tmp_path: Path, args: list[str], env: dict[str, str], text: str
) -> None:
    """Found by the new-user trial (8b, F9): each of these gave exit 70 "internal error"
    (FileNotFoundError, IsADirectoryError, ENOSPC, OverflowError, NotADirectoryError,
    ValueError, ImportError). A path the system refuses, a number out of range or a
    usage URL whose file system is not installed is one line with its reason, exit 2."""
    cli.env.update(env)
    result = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == 2, str(result)
    assert text.replace("{tmp}", str(tmp_path)) in result.error_line()
    assert not (tmp_path / "s").exists()


def test_out_without_format_takes_the_format_from_the_name(cli, tmp_path: Path) -> None:
    """Found by the new-user trial (8b, M1): ``--out FILE`` without ``--format`` printed
    the table, wrote no file and exited 0. The name's suffix gives the format; a name
    without one, or ``--format table`` with ``--out``, is refused in one line."""
    for name in ("a.csv", "a.json", "a.parquet"):
        out = tmp_path / name
        done = cli("analytics", "sql", "SELECT 1 AS x", "--out", out, ok=True)
        assert done.stdout == "" and done.stderr.strip() == f"1 row(s) written to {out}"
    assert (tmp_path / "a.csv").read_text().splitlines() == ['"x"', "1"]
    assert json.loads((tmp_path / "a.json").read_text()) == [{"x": 1}]
    assert duckdb.sql(f"SELECT x FROM '{tmp_path / 'a.parquet'}'").fetchall() == [(1,)]
    no_suffix = cli("analytics", "sql", "SELECT 1 AS x", "--out", tmp_path / "a.txt")
    assert no_suffix.returncode == 2
    assert "a.txt: give --format csv, json or parquet" in no_suffix.error_line()
    table = cli("analytics", "sql", "SELECT 1", "--format", "table", "--out", tmp_path / "t.csv")
    assert table.returncode == 2
    assert "--format table is printed, not written" in table.error_line()
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "t.csv").exists()
