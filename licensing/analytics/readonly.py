"""The analysts' guard: read-only SQL over the usage data, by DuckDB's own mechanisms.

* **Statement types** (:func:`check`): ``duckdb.extract_statements`` splits the text
  and types each statement; only ``SELECT`` (which covers ``WITH``, ``DESCRIBE``,
  ``SUMMARIZE``, ``SHOW``, ``FROM ...``, ``VALUES``) and ``EXPLAIN`` pass, and an
  ``EXPLAIN [ANALYZE]`` must explain a ``SELECT`` (found with ``duckdb.tokenize``, since
  ``EXPLAIN ANALYZE`` runs its statement). Anything else (INSERT, UPDATE, DELETE,
  CREATE, DROP, ALTER, COPY, EXPORT, ATTACH, DETACH, INSTALL, LOAD, SET, RESET, USE,
  PRAGMA, CALL, CHECKPOINT, VACUUM, PREPARE, EXECUTE, transactions, PIVOT statements) is
  refused before anything runs, with the statement's number and type, even if the other
  statements are fine.
* **File access** (:func:`harden`): ``allowed_directories`` is the usage data's root,
  then ``enable_external_access = false``: reading any other file (``read_csv('/etc/
  passwd')``, ``glob``, ``ATTACH``) fails with DuckDB's permission error, and extensions
  cannot be installed. ``python_enable_replacements = false``: a query cannot read the
  Python process's variables. ``autoinstall/autoload_known_extensions = false``.
* **Limits**: ``memory_limit`` and ``threads`` from ``analytics.sql_memory_limit`` /
  ``sql_threads``, no spilling to disk (``temp_directory = ''``), and a time limit:
  a timer thread calls ``con.interrupt()`` after ``analytics.sql_timeout`` seconds.
* ``lock_configuration = true`` last: no setting above can be changed afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectsw.core.errors import ConnectSWError, ExitCode

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from connectsw.conf.settings import Settings

ALLOWED = ("SELECT", "EXPLAIN")


class QueryRefused(ConnectSWError):
    """The analyst's SQL is not a read-only query of the usage data."""

    code = "query_refused"
    exit_code = ExitCode.INVALID_INPUT


class QueryError(ConnectSWError):
    """The query is allowed but DuckDB could not run it (syntax, unknown column...)."""

    code = "query_error"
    exit_code = ExitCode.INVALID_INPUT


class QueryTimeout(ConnectSWError):
    """The query ran past ``analytics.sql_timeout``."""

    code = "query_timeout"
    exit_code = ExitCode.ERROR


def _kind(statement: duckdb.Statement) -> str:
    return str(statement.type).rsplit(".", 1)[-1]


def check(sql: str) -> list[str]:
    """The statements of ``sql``, each a read-only query; else :class:`QueryRefused`."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"invalid SQL: {_first_line(exc)}") from None
    except ValueError:  # a statement type the Python API does not know (UPDATE EXTENSIONS)
        raise QueryRefused("refused: only SELECT and EXPLAIN statements may run") from None
    if not statements:
        raise QueryRefused("no SQL statement given")
    many = len(statements) > 1
    for number, statement in enumerate(statements, 1):
        kind = _kind(statement)
        where = f"statement {number} " if many else ""
        if kind not in ALLOWED:
            raise QueryRefused(
                f"refused: {where}is {kind.replace('_', ' ')}; only SELECT (WITH, DESCRIBE,"
                " SUMMARIZE, SHOW) and EXPLAIN may run: analytics SQL is read-only"
            )
        if kind == "EXPLAIN":
            inner = _explained(statement.query)
            if inner != "SELECT":
                raise QueryRefused(
                    f"refused: {where}explains {inner}; only SELECT may be explained"
                )
    return [s.query for s in statements]


def _explained(query: str) -> str:
    """The type of the statement an ``EXPLAIN [ANALYZE]`` explains."""
    import duckdb

    tokens = duckdb.tokenize(query)

    def word(i: int) -> str:
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(query)
        return query[tokens[i][0] : end].strip().upper()

    skip = 2 if len(tokens) > 1 and word(1) == "ANALYZE" else 1
    if len(tokens) <= skip:
        return "nothing"
    try:
        inner = duckdb.extract_statements(query[tokens[skip][0] :])
    except (duckdb.Error, ValueError):
        return "an invalid statement"
    return _kind(inner[0]) if len(inner) == 1 else "several statements"


def harden(con: duckdb.DuckDBPyConnection, settings: Settings, allowed_dirs: Sequence[str]) -> None:
    """Lock ``con`` down for analysts: files, extensions, limits; then the configuration."""
    options = settings.analytics
    dirs = ", ".join(_text(d.rstrip("/") + "/") for d in allowed_dirs)
    for statement in (
        f"SET allowed_directories = [{dirs}]",
        "SET python_enable_replacements = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        f"SET memory_limit = {_text(options.sql_memory_limit)}",
        f"SET threads = {int(options.sql_threads)}",
        "SET temp_directory = ''",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def run(con: duckdb.DuckDBPyConnection, sql: str, timeout: float) -> pa.Table:
    """Run the checked statements of ``sql`` within ``timeout`` seconds; the last one's rows.

    Raises:
        QueryRefused: a statement that is not read-only, or reading a file outside the
            usage data.
        QueryError: DuckDB refused the query (syntax, unknown table or column, memory).
        QueryTimeout: still running after ``timeout`` seconds (interrupted).
    """
    import duckdb

    statements = check(sql)
    timer = threading.Timer(timeout, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        result = None
        for statement in statements:
            result = con.sql(statement).to_arrow_table()
        assert result is not None
        return result
    except duckdb.InterruptException:
        raise QueryTimeout(f"query stopped after {timeout:g} s (analytics.sql_timeout)") from None
    except duckdb.PermissionException as exc:
        raise QueryRefused(
            f"refused: only the usage data may be read ({_first_line(exc).split(': ', 1)[-1]})"
        ) from None
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    finally:
        timer.cancel()
