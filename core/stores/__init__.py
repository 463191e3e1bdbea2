"""Persistence: the store interface and its backends, chosen by URL."""

from __future__ import annotations

import threading

from connectsw.core.errors import ConfigError
from connectsw.core.redact import AMBIGUOUS, ambiguous, redact
from connectsw.core.stores.base import Store

_lock = threading.Lock()
_open: dict[str, Store] = {}


def open_store(url: str) -> Store:
    """A new store for ``url``: ``sqlite:///path`` or ``postgresql://user@host:port/db``.

    Raises:
        ConfigError: another kind of URL, or a PostgreSQL URL whose user name or
            password (or a secret query parameter) is not percent-encoded where libpq
            needs it (:func:`connectsw.core.redact.ambiguous`); the URL is not shown.
        StoreError: the store cannot be opened (the message masks the URL's secrets).
    """
    if url.startswith("sqlite:///"):
        from connectsw.core.stores.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        if ambiguous(url):  # libpq would read another password than we mask
            raise ConfigError(f"store.url: {AMBIGUOUS}")
        from connectsw.core.stores.postgres import PostgresStore

        return PostgresStore(url)
    # Never echo the value: it may be a libpq "host=... password=..." string.
    raise ConfigError(
        "store.url is not a supported store URL (expected sqlite:///PATH or"
        " postgresql://USER@HOST:PORT/DB; the value is not shown: it may hold a password)"
    )


def get_store(url: str) -> Store:
    """The process-wide store for ``url`` (opened once; used by Dask workers)."""
    with _lock:
        store = _open.get(url)
        if store is None:
            store = _open[url] = open_store(url)
        return store


def opened_store(url: str) -> Store | None:
    """The process-wide store for ``url`` if this process has opened it, else None."""
    with _lock:
        return _open.get(url)


__all__ = ["Store", "get_store", "open_store", "opened_store", "redact"]
