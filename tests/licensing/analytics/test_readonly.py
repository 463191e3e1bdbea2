"""The analysts' guard: only read-only queries of the usage data, within limits."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from connectsw.conf.settings import Settings
from connectsw.licensing.analytics.ingest import import_events
from connectsw.licensing.analytics.readonly import (
    QueryError,
    QueryRefused,
    QueryTimeout,
    check,
    run,
)
from connectsw.licensing.analytics.views import connect

from .conftest import event, write_csv


@pytest.fixture
def con(settings: Settings, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    import_events(
        settings, [write_csv(tmp_path / "a.csv", [event(), event(ts="2026-05-02T01:00:00Z")])]
    )
    connection = connect(settings)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM usage",
        "WITH x AS (SELECT * FROM usage) SELECT count(*) FROM x",
        "DESCRIBE usage",
        "SUMMARIZE usage",
        "SHOW TABLES",
        "FROM usage_hourly",
        "EXPLAIN SELECT * FROM usage",
        "EXPLAIN ANALYZE SELECT count(*) FROM usage",
        "SELECT 1; SELECT count(*) FROM usage",
        "SELECT * FROM query('SELECT 42')",
    ],
)
def test_read_only_queries_run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert run(con, sql, 10).num_rows >= 1


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("INSERT INTO license_records VALUES ('x', 'PRO', 1, 'active', 'local')", "INSERT"),
        ("UPDATE license_records SET tier = 'FREE'", "UPDATE"),
        ("DELETE FROM license_records", "DELETE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("DROP VIEW usage", "DROP"),
        ("ALTER VIEW usage RENAME TO u", "ALTER"),
        ("COPY (SELECT * FROM usage) TO 'out.csv'", "COPY"),
        ("EXPORT DATABASE 'dump'", "EXPORT"),
        ("ATTACH 'other.db'", "ATTACH"),
        ("DETACH memory", "DETACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD json", "LOAD"),
        ("SET threads = 64", "SET"),
        ("RESET memory_limit", "SET"),
        ("PRAGMA version", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("CHECKPOINT", "CALL"),
        ("BEGIN TRANSACTION", "TRANSACTION"),
        ("SELECT 1; DROP VIEW usage", "statement 2 is DROP"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "explains COPY"),
    ],
)
def test_each_kind_of_change_is_refused_before_it_runs(
    con: duckdb.DuckDBPyConnection, sql: str, word: str
) -> None:
    with pytest.raises(QueryRefused) as caught:
        run(con, sql, 10)
    assert word in str(caught.value)
    assert "\n" not in str(caught.value)
    assert run(con, "SELECT count(*) FROM usage", 10).to_pylist() == [{"count_star()": 2}]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('{usage}/../connectsw.db')",
        "SELECT * FROM read_text('{usage}/../../a.csv')",
    ],
)
def test_files_outside_the_usage_data_are_refused(
    con: duckdb.DuckDBPyConnection, settings: Settings, sql: str
) -> None:
    usage = str(settings.data_dir / "usage")
    with pytest.raises(QueryRefused, match="^refused: only the usage data may be read"):
        run(con, sql.format(usage=usage), 10)


def test_the_usage_files_themselves_are_readable(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    glob = f"{settings.data_dir}/usage/date=*/*.parquet"
    assert run(con, f"SELECT count(*) AS n FROM read_parquet('{glob}')", 10).to_pylist() == [
        {"n": 2}
    ]


def test_configuration_is_locked(con: duckdb.DuckDBPyConnection) -> None:
    # Even bypassing check(), DuckDB itself refuses to loosen the settings.
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    settings = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings["enable_external_access"] == "false"
    assert settings["threads"] == "2"
    assert settings["lock_configuration"] == "true"


def test_a_query_over_the_time_limit_is_interrupted(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(
        QueryTimeout, match=r"^query stopped after 0.5 s \(analytics.sql_timeout\)$"
    ):
        run(con, "SELECT count(*) FROM range(1000000000000) a, range(10) b", 0.5)
    assert run(con, "SELECT 1 AS one", 5).to_pylist() == [{"one": 1}]


def test_bad_sql_is_one_line(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(QueryError) as caught:
        run(con, "SELECT nope FROM usage", 10)
    assert "\n" not in str(caught.value) and "nope" in str(caught.value)
    with pytest.raises(QueryError, match="invalid SQL"):
        check("SELEC 1")
    with pytest.raises(QueryRefused, match="no SQL statement"):
        check(" ; ")
