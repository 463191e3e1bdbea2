"""What differs between the SQL backends: one small dialect object per backend.

The statements themselves are written once (:mod:`connectsw.core.stores.sql`),
with ``?`` for a parameter and ``?json`` for a JSON parameter; the dialect turns
them into its driver's text and supplies what cannot be written portably: column
types, upserts that renumber a row, locks, batched inserts returning keys.
Both backends accept ``INSERT ... ON CONFLICT (...) DO UPDATE SET c = excluded.c``
(SQLite since 3.24), ``IS NULL`` and window functions (SQLite since 3.25).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


class Dialect:
    """The SQLite dialect; :class:`PostgresDialect` overrides what differs."""

    name = "SQLite"
    param = "?"
    json_param = "?"
    #: DDL words used by the migrations (``{json}``, ``{time}``, ...).
    types: Mapping[str, str] = {
        "json": "TEXT",
        "time": "TEXT",
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        # PostgreSQL orders task results by an identity column; SQLite by rowid.
        "written_column": "",
    }
    #: The expression giving task results' write order (latest write last).
    write_order = "rowid"
    #: Appended to a SELECT that must hold its rows until commit (SQLite's write
    #: transaction already excludes every other writer).
    share_lock = ""
    #: Appended to a SELECT whose rows the transaction will change (PostgreSQL's row
    #: lock; SQLite's write transaction already excludes every other writer).
    update_lock = ""
    #: Whether a JSON column's text reads back otherwise than written (PostgreSQL's
    #: JSONB keeps a parsed form: its key order and spacing are its own).
    json_rewritten = False

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """``text`` with its ``?`` and ``?json`` parameters in this driver's style."""
        out = self._cache.get(text)
        if out is None:
            out = text.replace("?json", "\0").replace("?", self.param)
            out = self._cache[text] = out.replace("\0", self.json_param)
        return out

    def json_text(self, column: str, *keys: str) -> str:
        """An expression: the text at ``keys`` (a path of object keys) of a JSON column
        (NULL if absent)."""
        return f"json_extract({column}, '$.{'.'.join(keys)}')"

    def json_member(self, column: str, key: str) -> str:
        """An expression: the JSON value at ``key`` of a JSON object column (NULL if absent)."""
        return f"json_extract({column}, '$.{key}')"

    def json_without(self, column: str, key: str) -> str:
        """An expression: the JSON object of ``column`` without its member ``key``."""
        return f"json_remove({column}, '$.{key}')"

    def json_elements(self, column: str, keys: Sequence[str], alias: str) -> str:
        """A FROM-clause item (to follow a comma or JOIN ... ON): one row per element of
        the JSON array at ``keys`` of ``column``, each element as ``{alias}.value``."""
        return f"json_each({column}, '$.{'.'.join(keys)}') AS {alias}"

    def seconds_between(self, start: str, end: str) -> str:
        """An expression: seconds (float) from ISO-8601 text ``start`` to ``end`` (NULL if
        either is NULL). SQLite's ``julianday`` reads milliseconds."""
        return f"((julianday({end}) - julianday({start})) * 86400.0)"

    def create_view(self, name: str, select: str) -> str:
        """A statement creating the view ``name`` as ``select`` (PostgreSQL: or replacing it)."""
        return f"CREATE VIEW IF NOT EXISTS {name} AS {select}"

    def replace_view(self, name: str, select: str) -> list[str]:
        """Statements giving the existing view ``name`` a new ``select`` with the same
        columns. SQLite has no CREATE OR REPLACE VIEW: drop and create (its views are
        kept as text, so a view reading this one reads the new one)."""
        return [f"DROP VIEW IF EXISTS {name}", f"CREATE VIEW {name} AS {select}"]

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        keys: Sequence[str],
        *,
        json: Sequence[str] = (),
        renumber: bool = False,
        expressions: Mapping[str, str] | None = None,
    ) -> str:
        """Insert a row or replace the one with the same ``keys``.

        ``renumber`` moves the replaced row to the end of the write order;
        ``expressions`` gives some columns an SQL expression (with its own ``?``
        parameters, in the row's order) instead of one parameter.
        """
        params = _params(columns, json, expressions)
        cols = ", ".join(columns)
        if renumber:  # a replaced row gets a new rowid
            return self.sql(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({params})")
        return self.sql(_on_conflict(table, columns, keys, params))

    def dump_time(self, value: datetime | None) -> Any:
        """A timestamp as the driver stores it."""
        return value.isoformat() if value is not None else None

    def load_time(self, value: Any) -> datetime | None:
        """A stored timestamp back as an aware datetime."""
        return datetime.fromisoformat(value) if value else None

    # -- operations that need the connection ---------------------------------------
    def table_exists(self, db: Any, name: str) -> bool:
        """True if the table exists (in the connection's schema)."""
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def lock_schema(self, db: Any) -> None:
        """Serialize schema changes between processes (SQLite: the write lock does)."""

    def lock_events(self, db: Any, execution_ids: Sequence[str]) -> None:
        """Before appending events of these executions (SQLite: the write lock suffices)."""

    def executemany(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for many rows; returns how many rows it changed."""
        if not rows:
            return 0
        return int(db.executemany(sql, rows).rowcount)

    def insert_returning(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert rows into a table with an integer key; returns the keys in order."""
        return [db.execute(sql, row).lastrowid for row in rows]


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3."""

    name = "PostgreSQL"
    param = "%s"
    json_param = "%s::jsonb"
    types: Mapping[str, str] = {
        "json": "JSONB",
        "time": "TIMESTAMPTZ",
        "serial_pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "written_column": "written BIGINT GENERATED ALWAYS AS IDENTITY,",
    }
    write_order = "written"
    share_lock = " FOR SHARE"
    update_lock = " FOR UPDATE"
    json_rewritten = True
    #: Advisory lock key serializing migrations ("conn").
    SCHEMA_LOCK = 0x636F6E6E

    def json_text(self, column: str, *keys: str) -> str:
        path = "".join(f"->'{k}'" for k in keys[:-1])
        return f"{column}{path}->>'{keys[-1]}'"

    def json_member(self, column: str, key: str) -> str:
        return f"{column}->'{key}'"

    def json_without(self, column: str, key: str) -> str:
        return f"{column} - '{key}'"

    def json_elements(self, column: str, keys: Sequence[str], alias: str) -> str:
        path = "".join(f"->'{k}'" for k in keys)
        return f"LATERAL jsonb_array_elements({column}{path}) AS {alias}(value)"

    def seconds_between(self, start: str, end: str) -> str:
        return (
            f"CAST(EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMPTZ) - CAST({start} AS TIMESTAMPTZ)))"
            " AS DOUBLE PRECISION)"
        )

    def create_view(self, name: str, select: str) -> str:
        return f"CREATE OR REPLACE VIEW {name} AS {select}"

    def replace_view(self, name: str, select: str) -> list[str]:
        # Same column names and types: views (and analysts' own) reading it are kept.
        return [self.create_view(name, select)]

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        keys: Sequence[str],
        *,
        json: Sequence[str] = (),
        renumber: bool = False,
        expressions: Mapping[str, str] | None = None,
    ) -> str:
        params = _params(columns, json, expressions)
        sql = _on_conflict(table, columns, keys, params)
        if renumber:  # a new identity value: the replaced row moves to the end
            sql += ", written = DEFAULT"
        return self.sql(sql)

    def dump_time(self, value: datetime | None) -> Any:
        return value

    def load_time(self, value: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def table_exists(self, db: Any, name: str) -> bool:
        row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def lock_schema(self, db: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (self.SCHEMA_LOCK,))

    def lock_events(self, db: Any, execution_ids: Sequence[str]) -> None:
        # Sequence values are handed out before commit, so two transactions could
        # commit their events of one execution out of ``seq`` order and a watcher
        # reading ``seq > last seen`` would skip one. Each transaction that appends
        # events first takes a transaction-scoped advisory lock per execution it
        # writes for, in a fixed order (no deadlocks): events of one execution
        # commit in ``seq`` order.
        for eid in sorted(set(execution_ids)):
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (eid,))

    def executemany(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with db.cursor() as cur:  # psycopg pipelines the rows: one round trip
            cur.executemany(sql, rows)
            return int(cur.rowcount)  # the sum over the rows (psycopg >= 3.1)

    def insert_returning(self, db: Any, sql: str, rows: Sequence[Sequence[Any]]) -> list[int]:
        if not rows:
            return []
        with db.cursor() as cur:  # one pipelined round trip, one result set per row
            cur.executemany(sql + " RETURNING seq", rows, returning=True)
            keys: list[int] = []
            while True:
                keys += [row[0] for row in cur.fetchall()]
                if not cur.nextset():
                    break
        return keys


def _params(
    columns: Sequence[str], json: Sequence[str], expressions: Mapping[str, str] | None
) -> str:
    given = expressions or {}
    return ", ".join(given.get(c) or ("?json" if c in json else "?") for c in columns)


def _on_conflict(table: str, columns: Sequence[str], keys: Sequence[str], params: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
