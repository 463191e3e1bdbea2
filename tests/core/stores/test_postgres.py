"""The PostgreSQL store's own cases: any driver error is a one-line StoreError without secrets."""

from __future__ import annotations

import time

import psycopg
import pytest

from connectsw.core.errors import StoreError
from connectsw.core.models import (
    Event,
    Execution,
    Plan,
    Request,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
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


def _table_stats(url: str) -> dict[str, tuple[int, int]]:
    """``{table: (seq_tup_read, n_tup_ins)}`` of the test's schema, as the server counted."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT relname, seq_tup_read, n_tup_ins FROM pg_stat_user_tables"
            " WHERE schemaname = current_schema()"
        ).fetchall()
    return {name: (int(scans), int(inserted)) for name, scans, inserted in rows}


def _plan(n: int) -> Plan:
    ids = [f"t{i}" for i in range(n)]
    return Plan(
        name="p",
        workflow="task-graph",
        tasks=[TaskSpec(id=t, agent="noop") for t in ids],
        stages=[Stage(index=0, name="one", task_ids=ids)],
    )


def test_records_of_a_large_plan_are_written_by_key_after_stats_of_a_small_one(
    postgres_url: str,
) -> None:
    """A statement prepared while the tables were small keeps no plan that scans them.

    The server's statistics say the tables are tiny after a small execution (autovacuum
    analyses them early); a cached generic plan then read every row of ``plan_tasks``
    for each record written (1.7 ms a record at 10,000 tasks, issue 5's overhead).
    """
    store = PostgresStore(postgres_url, max_size=1)  # one connection: its cached plans
    try:
        small = Execution(request=Request(command="run"), plan=_plan(3), workspace="/w")
        store.create_execution(small)

        def save_small(attempts: range) -> None:
            for attempt in attempts:  # past psycopg's prepare threshold and the server's 5
                store.save_task_results(
                    [
                        TaskResult(
                            execution_id=small.id,
                            task_id=t.id,
                            attempt=attempt,
                            status=TaskStatus.SUCCEEDED,
                        )
                        for t in small.plan.tasks
                    ]
                )

        save_small(range(1, 9))
        with psycopg.connect(postgres_url, autocommit=True) as db:  # as autovacuum would
            db.execute("ANALYZE plan_tasks")
            db.execute("ANALYZE task_results")
        save_small(range(9, 11))  # statements planned again, for tables this small
        n = 2_000
        large = Execution(request=Request(command="run"), plan=_plan(n), workspace="/w")
        store.create_execution(large)
        tasks = large.plan.tasks
        for start in range(0, n, 50):
            store.save_task_results(
                [
                    TaskResult(execution_id=large.id, task_id=t.id, status=TaskStatus.SUCCEEDED)
                    for t in tasks[start : start + 50]
                ]
            )
        assert [r.task_id for r in store.task_results(large.id)] == [t.id for t in tasks]
        store.close()  # a backend publishes its counts when it ends
        deadline = time.monotonic() + 10
        while (stats := _table_stats(postgres_url))["task_results"][1] < n + 30:
            assert time.monotonic() < deadline, "the server did not count the inserts"
            time.sleep(0.1)
        # Rows read by scans of whole tables: a few small-table reads, not ~n²/2.
        read = {t: stats[t][0] for t in ("plan_tasks", "task_results")}
        assert read["plan_tasks"] < n and read["task_results"] < n, read
    finally:
        store.close()
