"""Every store test runs against the embedded SQLite store and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connectsw.core.stores import Store
from connectsw.core.stores.postgres import PostgresStore
from connectsw.core.stores.sqlite import SQLiteStore

Opener = Callable[[], Store]


def sqlite_backend(request: pytest.FixtureRequest) -> Opener:
    path = request.getfixturevalue("tmp_path") / "store" / "connectsw.db"
    return lambda: SQLiteStore(path)


def postgres_backend(request: pytest.FixtureRequest) -> Opener:
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Opener]] = {
    "sqlite": sqlite_backend,
    "postgresql": postgres_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def open_new(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens store instances of the backend on one shared storage; closes them after."""
    factory = BACKENDS[request.param](request)
    opened: list[Store] = []

    def open_one() -> Store:
        store = factory()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_new: Opener) -> Store:
    return open_new()
