"""The production store: PostgreSQL through psycopg 3 and a psycopg-pool connection pool.

The SQL is :class:`~connectsw.core.stores.sql.SQLStore`'s, in the PostgreSQL
dialect (:class:`~connectsw.core.stores.dialects.PostgresDialect`): records as
JSONB, keys as columns. Every method is one transaction.

Events carry a global ``seq``; a watcher reads ``seq > last seen``. Sequence
values are handed out before commit, so two transactions could commit their
events of one execution out of ``seq`` order and a watcher would skip one. Each
transaction that appends events therefore first takes a transaction-scoped
advisory lock per execution it writes for: events of one execution commit in
``seq`` order.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from connectsw.core.redact import redact
from connectsw.core.stores.dialects import PostgresDialect
from connectsw.core.stores.sql import SQLStore


def _quiet_pool_logs() -> None:
    """psycopg_pool logs two lines per failed connection attempt: about 40 warnings when
    the server goes away under a running stage (trial 8b F8). The store's own error
    says it once. Kept with ``CONNECTSW_DEBUG``, or a level the application set."""
    pool_log = logging.getLogger("psycopg.pool")
    if pool_log.level == logging.NOTSET and not os.environ.get("CONNECTSW_DEBUG"):
        pool_log.setLevel(logging.ERROR)


_quiet_pool_logs()

CONNECT_TIMEOUT = 10.0
POOL_MAX = 4


class PostgresStore(SQLStore):
    """Store backed by a PostgreSQL database (``postgresql://user:pw@host:port/db``)."""

    dialect = PostgresDialect()
    driver_errors = (psycopg.Error, PoolTimeout)

    def __init__(self, url: str, max_size: int = POOL_MAX) -> None:
        self.url = url
        self.where = redact(url)
        self._max_size = max_size
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        # Opened on one direct connection: a wrong URL fails now, with the server's reason.
        self._open_schema()

    @contextmanager
    def _opening_connection(self, write: bool) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.url, connect_timeout=int(CONNECT_TIMEOUT)) as conn:
            _configure(conn)
            with conn.transaction():
                yield conn

    def _get_pool(self) -> ConnectionPool[Any]:
        """The connection pool, opened on first use (and again after :meth:`close`)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    # Autocommit: a read is one round trip (no BEGIN/COMMIT around it);
                    # writes open their transaction explicitly in _connection.
                    kwargs={"connect_timeout": int(CONNECT_TIMEOUT), "autocommit": True},
                    configure=_configure,
                    open=True,
                    name="connectsw-store",
                )
            return self._pool

    @contextmanager
    def _connection(self, write: bool) -> Iterator[psycopg.Connection[Any]]:
        pool = self._get_pool()
        with pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            if not write:  # every read is a single statement: its own snapshot
                yield conn
                return
            with conn.transaction():
                yield conn

    def close(self) -> None:
        """Close the pool's connections; a later call opens a new pool."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """A new connection's settings.

    JSONB columns are read as their text: records are parsed by pydantic.

    Every statement is planned for the tables as they are when it runs
    (``plan_cache_mode``). psycopg prepares a statement run five times, and the
    server then may keep one generic plan for it; a plan made while a table was
    small scans the whole table, and keeps doing so as an execution adds
    thousands of rows (a record's write read all of ``plan_tasks``: 1.7 ms a
    record at 10,000 tasks). Re-planning costs tens of microseconds.
    """
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.execute("SET plan_cache_mode = force_custom_plan")
    if not conn.autocommit:
        conn.commit()
