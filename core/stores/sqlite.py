"""The embedded store: one SQLite file in WAL mode, one connection per thread.

Dask workers in other processes write task results to the same file; WAL lets
readers (``connectsw watch``) go on while one writer commits. Every write
transaction starts with ``BEGIN IMMEDIATE`` (the write lock first, retried
quickly), so no transaction ever has to upgrade a read lock, which SQLite
refuses at once with "database is locked" when another writer got in between.

A store that cannot be written (a read-only mount, a file the user may not
write) is opened read-only if its schema is current: ``mode=ro``, or, when the
WAL's shared-memory file cannot be created there, ``immutable=1`` (SQLite then
assumes nobody changes the file, which is true on a read-only mount).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connectsw.core.errors import StoreError
from connectsw.core.stores.dialects import Dialect
from connectsw.core.stores.sql import SQLStore

#: Seconds a write waits for the lock before failing (StoreError).
LOCK_TIMEOUT = 60.0


class SQLiteStore(SQLStore):
    """Store backed by a SQLite file (created, with its directory, if missing)."""

    dialect = Dialect()
    driver_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []  # every thread's, to close them all
        self._immutable = False
        self.read_only = self._check_location()
        try:
            self._open_schema()
        except BaseException:
            self.close()
            raise

    def _check_location(self) -> str | None:
        """Create the directory; returns why the store is read-only, or None.

        Raises StoreError when the store can be neither created nor read.
        """
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self._cannot_open(f"{_first_file(parent)} is not a directory") from None
        except OSError as exc:
            raise self._cannot_open(_reason(exc)) from None
        if self.path.is_dir():
            raise self._cannot_open("it is a directory")
        exists = self.path.exists()
        if os.access(parent, os.W_OK) and (not exists or os.access(self.path, os.W_OK)):
            return None
        why = "read-only file system" if _read_only_mount(parent) else "permission denied"
        if not exists:
            raise self._cannot_open(f"{parent}: {why}")
        return why

    def _cannot_open(self, why: str) -> StoreError:
        return StoreError(f"cannot open the SQLite store at {self.where}: {why}")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn not in self._conns:  # none yet, or closed by close()
            conn = self._local.conn = self._connect()
            with self._lock:
                self._conns.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        conn = sqlite3.connect(
            self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            # Turning WAL on writes the header of a new file: under the lock retry too.
            _retry_locked(conn, "PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        uri = self.path.absolute().as_uri()
        if not self._immutable:
            conn = _connect_uri(f"{uri}?mode=ro")
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError:  # no -shm file and none can be created here
                conn.close()
                self._immutable = True
        return _connect_uri(f"{uri}?immutable=1")

    @contextmanager
    def _connection(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write and self.read_only:
            raise StoreError(f"cannot write the SQLite store at {self.where}: {self.read_only}")
        db = self._conn()
        if not write:
            yield db
            return
        _retry_locked(db, "BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one).

        Call it when no other thread is using the store.
        """
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local.conn = None


def _retry_locked(db: sqlite3.Connection, statement: str) -> None:
    """Run ``statement`` (taking the write lock), retrying quickly while another process holds it.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ... ms between tries; task writes
    from several Dask workers take well under a millisecond, so spin finer.
    Past :data:`LOCK_TIMEOUT` the last "database is locked" error is raised.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT
    pause = 0.0001
    db.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                db.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.005)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT * 1000)}")


def _connect_uri(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def _reason(exc: OSError) -> str:
    """An OSError's reason as a lower-case phrase ("read-only file system"), worded by
    core/textfiles.py's rule for paths a user gives."""
    from connectsw.core.textfiles import os_reason

    return os_reason(exc)


def _first_file(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a directory."""
    for p in reversed([path, *path.parents]):
        if p.exists() and not p.is_dir():
            return p
    return path


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
