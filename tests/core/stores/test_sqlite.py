"""The SQLite store's own cases: where it lives (fault 10's data dir) and its driver errors.

Every failure is a one-line StoreError (exit 6), never an OSError or sqlite3 traceback.
A read-only location is a read-only tmpfs mount when the tests run as root (as in
CI), else a directory without write permission.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectsw.core.errors import StoreError
from connectsw.core.models import Event, Execution, ExecutionStatus, Plan, Request
from connectsw.core.stores import sqlite as sqlite_module
from connectsw.core.stores.sqlite import SQLiteStore

HERE = Path(__file__).parent


def make_execution() -> Execution:
    plan = Plan(name="p", workflow="w", tasks=[], stages=[])
    return Execution(request=Request(command="run"), plan=plan, workspace="/w")


class ReadOnly:
    """A directory that is writable until :meth:`freeze` makes it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = os.geteuid() == 0
        self.reason = "read-only file system" if self.root else "permission denied"
        path.mkdir()
        if self.root:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], check=True
            )

    def freeze(self) -> None:
        if self.root:
            subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
            return
        for p in [self.path, *self.path.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)

    def cleanup(self) -> None:
        if self.root:  # lazily: a leaked descriptor must not leave the mount behind
            subprocess.run(["umount", "--lazy", str(self.path)], check=True)
            return
        for p in [self.path, *self.path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[ReadOnly]:
    location = ReadOnly(tmp_path / "mnt")
    yield location
    location.cleanup()


@pytest.fixture
def stores() -> Iterator[Callable[[Path], SQLiteStore]]:
    opened: list[SQLiteStore] = []

    def open_one(path: Path) -> SQLiteStore:
        store = SQLiteStore(path)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def test_a_fresh_store_on_a_read_only_location_is_a_store_error(
    read_only: ReadOnly, stores: Callable[[Path], SQLiteStore]
) -> None:
    read_only.freeze()
    nested = read_only.path / "data" / "connectsw.db"
    with pytest.raises(StoreError) as info:
        stores(nested)
    assert str(info.value) == f"cannot open the SQLite store at {nested}: {read_only.reason}"
    assert info.value.exit_code == 6
    direct = read_only.path / "connectsw.db"
    with pytest.raises(StoreError) as info:
        stores(direct)
    assert str(info.value) == (
        f"cannot open the SQLite store at {direct}: {read_only.path}: {read_only.reason}"
    )


def test_a_current_store_on_a_read_only_location_can_be_read(
    read_only: ReadOnly, stores: Callable[[Path], SQLiteStore]
) -> None:
    path = read_only.path / "data" / "connectsw.db"
    writer = SQLiteStore(path)
    execution = make_execution()
    writer.create_execution(execution, [Event(execution_id=execution.id, kind="x")])
    writer.close()
    read_only.freeze()

    store = stores(path)  # what `connectsw status` does
    assert store.read_only == read_only.reason
    assert store.get_execution(execution.id) == execution
    assert [e.kind for e in store.events(execution.id)] == ["x"]
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(store.execution_status(execution.id)))
    thread.start()
    thread.join()
    assert seen == [ExecutionStatus.PENDING]
    with pytest.raises(StoreError) as info:
        store.add_events([Event(execution_id=execution.id, kind="y")])
    assert str(info.value) == f"cannot write the SQLite store at {path}: {read_only.reason}"


def test_an_old_store_on_a_read_only_location_needs_an_upgrade(
    read_only: ReadOnly, stores: Callable[[Path], SQLiteStore]
) -> None:
    path = read_only.path / "connectsw.db"
    with sqlite3.connect(path) as db:
        db.executescript((HERE / "v1_schema.sqlite.sql").read_text())
    db.close()
    read_only.freeze()
    with pytest.raises(StoreError) as info:
        stores(path)
    assert str(info.value) == (
        f"cannot open the SQLite store at {path}: {read_only.reason}"
        " (its schema needs an upgrade, from version 0)"
    )


def test_a_file_where_the_data_dir_should_be(
    tmp_path: Path, stores: Callable[[Path], SQLiteStore]
) -> None:
    (tmp_path / "data").write_text("not a directory")
    for path in (tmp_path / "data" / "connectsw.db", tmp_path / "data" / "sub" / "connectsw.db"):
        with pytest.raises(StoreError) as info:
            stores(path)
        assert str(info.value) == (
            f"cannot open the SQLite store at {path}: {tmp_path / 'data'} is not a directory"
        )


def test_a_directory_where_the_database_should_be(
    tmp_path: Path, stores: Callable[[Path], SQLiteStore]
) -> None:
    (tmp_path / "connectsw.db").mkdir()
    with pytest.raises(StoreError, match="connectsw.db: it is a directory$"):
        stores(tmp_path / "connectsw.db")


def test_a_file_that_is_not_a_database(
    tmp_path: Path, stores: Callable[[Path], SQLiteStore]
) -> None:
    path = tmp_path / "connectsw.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError) as info:
        stores(path)
    assert str(info.value) == f"cannot open the SQLite store at {path}: file is not a database"


def test_a_lock_held_past_the_timeout_is_a_store_error(
    tmp_path: Path, stores: Callable[[Path], SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "connectsw.db"
    store = stores(path)
    execution = make_execution()
    store.create_execution(execution)
    monkeypatch.setattr(sqlite_module, "LOCK_TIMEOUT", 0.3)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as info:
            store.add_events([Event(execution_id=execution.id, kind="x")])
        assert str(info.value) == f"the SQLite store at {path} failed: database is locked"
    finally:
        other.execute("ROLLBACK")
        other.close()
    # The connection is usable again once the lock is free.
    assert [e.kind for e in store.add_events([Event(execution_id=execution.id, kind="y")])] == ["y"]
