"""The PostgreSQL store's own cases: any driver error is a one-line StoreError without secrets."""

from __future__ import annotations

import psycopg
import pytest

from connectsw.core.errors import StoreError
from connectsw.core.models import Event, Execution, Plan, Request
from connectsw.core.stores.postgres import PostgresStore


def with_password(url: str, password: str) -> str:
    """``url`` with a password (the test server trusts local connections and ignores it)."""
    return url.replace("postgresql://connectsw@", f"postgresql://connectsw:{password}@", 1)


def test_any_driver_error_is_a_store_error_without_the_password(postgres_url: str) -> None:
    url = with_password(postgres_url, "s3cret")
    assert url != postgres_url
    store = PostgresStore(url)
    try:
        plan = Plan(name="p", workflow="w", tasks=[], stages=[])
        execution = Execution(request=Request(command="run"), plan=plan, workspace="/w")
        store.create_execution(execution)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("DROP TABLE events")  # a programming error, not an operational one
        for call in (
            lambda: store.events(execution.id),
            lambda: store.add_events([Event(execution_id=execution.id, kind="x")]),
        ):
            with pytest.raises(StoreError) as info:
                call()
            message = str(info.value)
            assert "\n" not in message and "s3cret" not in message
            assert message.startswith("the PostgreSQL store at postgresql://connectsw:***@")
            assert message.endswith('failed: relation "events" does not exist')
            assert info.value.exit_code == 6
        assert store.get_execution(execution.id) == execution  # the pool is still usable
    finally:
        store.close()
