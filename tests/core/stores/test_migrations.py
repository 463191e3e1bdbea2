"""Versioned schema migrations: v1 databases upgrade, newer ones are refused, current ones
open without a write. Each case runs on SQLite and PostgreSQL.

``v1_schema.<backend>.sql`` is the schema the stores created before versions were
recorded, copied verbatim from that code.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectsw.core.errors import Conflict, StoreError
from connectsw.core.models import (
    CheckpointState,
    Decision,
    Event,
    Execution,
    ExecutionStatus,
    Plan,
    Request,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store, open_store
from connectsw.core.stores import sqlite as sqlite_module
from connectsw.core.stores.dialects import Dialect, PostgresDialect
from connectsw.core.stores.migrations import LATEST, MIGRATIONS, migrate

HERE = Path(__file__).parent


@dataclass
class Backend:
    name: str
    url: str
    dialect: Dialect
    connect: Callable[[], Any]  # a raw DB-API connection (autocommit)

    def script(self, sql: str) -> None:
        with self.connect() as db:
            for statement in sql.split(";"):
                if statement.strip():
                    db.execute(statement)
            if self.name == "sqlite":
                db.commit()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = self.connect()
        try:
            return [tuple(r) for r in db.execute(sql).fetchall()]
        finally:
            db.close()

    def columns(self) -> dict[str, list[tuple[str, str]]]:
        """Each table's (column, type) pairs, and its indexes as ("index", name)."""
        out: dict[str, list[tuple[str, str]]] = {}
        if self.name == "sqlite":
            for (table,) in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'"):
                if table.startswith("sqlite_"):
                    continue
                info = self.rows(f"PRAGMA table_info({table})")
                indexes = self.rows(f"PRAGMA index_list({table})")
                out[table] = [(r[1], r[2]) for r in info] + sorted(("index", r[1]) for r in indexes)
            return out
        for table, column, kind in self.rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            out.setdefault(table, []).append((column, kind))
        for table, index in self.rows(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()"
        ):
            out[table].append(("index", index))
        return {
            t: [c for c in cols if c[0] != "index"] + sorted(c for c in cols if c[0] == "index")
            for t, cols in out.items()
        }


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "data" / "connectsw.db"
        path.parent.mkdir()
        return Backend(
            "sqlite",
            f"sqlite:///{path}",
            Dialect(),
            lambda: sqlite3.connect(path, isolation_level=None),
        )
    url = request.getfixturevalue("postgres_url")
    return Backend(
        "postgresql", url, PostgresDialect(), lambda: psycopg.connect(url, autocommit=True)
    )


@pytest.fixture
def opened() -> Iterator[Callable[[str], Store]]:
    stores: list[Store] = []

    def open_one(url: str) -> Store:
        store = open_store(url)
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        store.close()


def v1_sql(backend: Backend) -> str:
    return (HERE / f"v1_schema.{backend.name}.sql").read_text()


def test_migration_1_is_the_schema_stores_had_before(backend: Backend, tmp_path: Path) -> None:
    backend.script(v1_sql(backend))
    legacy = backend.columns()
    backend.script("; ".join(f"DROP TABLE {t}" for t in legacy))
    backend.script(";\n".join(MIGRATIONS[0].sql(backend.dialect)))
    assert backend.columns() == legacy


def json(record: Any, **kw: Any) -> str:
    return str(record.model_dump_json(**kw))


def test_a_v1_database_is_upgraded_in_place(
    backend: Backend, opened: Callable[[str], Store]
) -> None:
    backend.script(v1_sql(backend))
    plan = Plan(name="p", workflow="w", tasks=[], stages=[])
    execution = Execution(
        request=Request(command="run"),
        plan=plan,
        workspace="/w",
        status=ExecutionStatus.AWAITING_CHECKPOINT,
        owner="old-host:1",
    )
    decided = CheckpointState(
        execution_id=execution.id, stage=0, type="t", question="q", decision=Decision.APPROVE
    )
    open_cp = CheckpointState(execution_id=execution.id, stage=1, type="t", question="q")
    result = TaskResult(execution_id=execution.id, task_id="a", status=TaskStatus.RUNNING)
    p = "?" if backend.name == "sqlite" else "%s"
    with backend.connect() as db:  # rows as the v1 code wrote them
        db.execute(
            "INSERT INTO executions (id, status, owner, heartbeat_at, updated_at, data)"
            f" VALUES ({p}, {p}, {p}, NULL, {p}, {p})",
            (
                execution.id,
                execution.status.value,
                execution.owner,
                execution.updated_at.isoformat(),
                json(execution, exclude={"owner", "heartbeat_at", "lease_token"}),
            ),
        )
        for cp in (decided, open_cp):
            db.execute(
                "INSERT INTO checkpoints (execution_id, stage, round, data)"
                f" VALUES ({p}, {p}, 0, {p})",
                (cp.execution_id, cp.stage, json(cp)),
            )
        db.execute(
            "INSERT INTO task_results (execution_id, task_id, round, attempt, status, data)"
            f" VALUES ({p}, 'a', 0, 1, 'running', {p})",
            (execution.id, json(result)),
        )
        db.execute(
            f"INSERT INTO events (execution_id, kind, data) VALUES ({p}, 'x', {p})",
            (execution.id, json(Event(execution_id=execution.id, kind="x"), exclude={"seq"})),
        )
        if backend.name == "sqlite":
            db.commit()

    store = opened(backend.url)
    assert backend.rows("SELECT version FROM schema_version ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]
    loaded = store.get_execution(execution.id)
    assert loaded is not None
    assert (loaded.owner, loaded.lease_token) == ("old-host:1", 0)
    assert loaded.model_dump(exclude={"lease_token"}) == execution.model_dump(
        exclude={"lease_token"}
    )
    assert store.running_attempts(execution.id) == [result]
    assert [e.kind for e in store.events(execution.id)] == ["x"]
    # The decision recorded in v1's JSON became the column a decision is conditional on.
    again = decided.model_copy(update={"decision": Decision.REQUEST_CHANGES})
    with pytest.raises(Conflict, match="already decided: approve"):
        store.transition(
            execution, {ExecutionStatus.AWAITING_CHECKPOINT}, checkpoint=again, decide=True
        )
    now = open_cp.model_copy(update={"decision": Decision.APPROVE})
    execution.status = ExecutionStatus.EXECUTING
    store.transition(execution, {ExecutionStatus.AWAITING_CHECKPOINT}, checkpoint=now, decide=True)
    assert [c.decision for c in store.checkpoints(execution.id)] == [Decision.APPROVE] * 2
    assert store.claim(execution.id, "new-host:2", 0, datetime.now(UTC)) == 1
    # Opening again applies nothing more.
    opened(backend.url)
    assert len(backend.rows("SELECT version FROM schema_version")) == len(MIGRATIONS)


def test_a_database_newer_than_the_code_is_refused(
    backend: Backend, opened: Callable[[str], Store]
) -> None:
    opened(backend.url).close()
    backend.script(
        "INSERT INTO schema_version (version, description, applied_at)"
        f" VALUES ({LATEST + 1}, 'from the future', '2030-01-01T00:00:00+00:00')"
    )
    with pytest.raises(StoreError) as info:
        opened(backend.url)
    assert str(info.value).endswith(
        f"has schema version {LATEST + 1}, newer than this connectsw knows ({LATEST}):"
        " upgrade connectsw to use it"
    )
    assert info.value.exit_code == 6


def hold_write_lock(backend: Backend) -> Any:
    """Another connection holding what a schema change would need; returns it."""
    db = backend.connect()
    if backend.name == "sqlite":
        db.execute("BEGIN IMMEDIATE")
    else:
        db.execute("SELECT pg_advisory_lock(%s)", (PostgresDialect.SCHEMA_LOCK,))
        db.execute("BEGIN")
        db.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
    return db


def test_opening_a_current_store_writes_nothing(
    backend: Backend, opened: Callable[[str], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LOCK_TIMEOUT", 2.0)  # a write would fail, not hang
    first = opened(backend.url)
    execution = Execution(
        request=Request(command="run"),
        plan=Plan(name="p", workflow="w", tasks=[], stages=[]),
        workspace="/w",
    )
    first.create_execution(execution)
    first.close()
    versions = backend.rows("SELECT version, applied_at FROM schema_version")
    blocker = hold_write_lock(backend)
    try:
        done: list[object] = []

        def status() -> None:  # what `connectsw status` does
            try:
                store = opened(backend.url)
                done.append(store.execution_status(execution.id))
            except BaseException as exc:  # pragma: no cover - reported below
                done.append(exc)

        thread = threading.Thread(target=status)
        thread.start()
        thread.join(timeout=10)
        assert done == [ExecutionStatus.PENDING]
    finally:
        blocker.rollback() if backend.name == "postgresql" else blocker.execute("ROLLBACK")
        blocker.close()
    assert backend.rows("SELECT version, applied_at FROM schema_version") == versions


def test_processes_upgrading_one_v1_database_at_once_apply_each_migration_once(
    backend: Backend, tmp_path: Path
) -> None:
    backend.script(v1_sql(backend))
    with backend.connect() as db:  # migrate() runs inside a transaction in the stores
        if backend.name == "sqlite":
            db.execute("BEGIN IMMEDIATE")
            migrate(db, backend.dialect, "x")
            db.execute("ROLLBACK")  # proves migrate() writes only inside the caller's tx
        else:
            with db.transaction(force_rollback=True):
                migrate(db, backend.dialect, "x")
    assert "schema_version" not in backend.columns()
    race = _race_module().race
    reports = race([backend.url], tmp_path / "barrier")
    assert [r for r in reports if not r["ok"]] == []
    assert backend.rows("SELECT version FROM schema_version ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]


def _race_module() -> Any:
    """The process race of test_open_race.py (test modules are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("open_race", HERE / "test_open_race.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- migration 12: the learning history becomes columns, filled from the JSON once ----------

LEARNING_VIEWS = {
    "execution_history": "execution_id",
    "task_history": "execution_id, task_id, round, attempt",
    "checkpoint_history": "execution_id, stage, round",
    "learned_patterns": "pattern_type, workflow, subject, agent, detail",
}


def learning_history() -> tuple[list[Execution], list[TaskResult], list[CheckpointState]]:
    """Executions of two workflows with retries, failures, an interrupted and a running
    attempt, an attempt of a task the plan lacks, and decisions with feedback."""
    E, S, F = ExecutionStatus, TaskStatus.SUCCEEDED, TaskStatus.FAILED
    runs = [  # workflow, status, license, [(task, status, seconds, round, attempt)], decisions
        ("wf", E.COMPLETED, None, [("write", S, 2.0, 0, 1), ("check", S, 1.0, 0, 1)]),
        ("wf", E.FAILED, None, [("write", F, 0.5, 0, 1), ("write", S, 3.25, 0, 2)]),
        ("wf", E.FAILED, None, [("check", F, 1.5, 0, 1), ("ghost", S, 1.0, 0, 1)]),
        ("wf", E.FAILED, None, [("check", TaskStatus.INTERRUPTED, None, 0, 2)]),
        ("wf", E.EXECUTING, None, [("write", TaskStatus.RUNNING, None, 1, 1)]),
        ("other", E.COMPLETED, "lic_1", [("write", S, 9.0, 0, 1), ("write", S, 7.0, 1, 1)]),
    ]
    decisions = [
        (0, 0, Decision.REQUEST_CHANGES, "Add tests"),
        (0, 1, Decision.APPROVE, None),
        (1, 0, Decision.CANCEL, None),
        (4, 0, None, None),  # waiting
        (5, 0, Decision.REQUEST_CHANGES, "  Add tests "),
    ]
    executions, results = [], []
    for i, (workflow, status, license_id, attempts) in enumerate(runs):
        plan = Plan(
            name=f"proj-{workflow}",
            workflow=workflow,
            tasks=[TaskSpec(id="write", agent="writer"), TaskSpec(id="check", agent="checker")],
            stages=[Stage(index=0, name="one", task_ids=["write", "check"])],
        )
        ex = Execution(
            request=Request(command="run"),
            plan=plan,
            workspace="/w",
            status=status,
            license_id=license_id,
            updated_at=datetime(2026, 1, 1, 12, i, tzinfo=UTC),
        )
        executions.append(ex)
        for task, outcome, seconds, round, n in attempts:
            start = datetime(2026, 1, 1, 12, i, tzinfo=UTC)
            end = start + timedelta(seconds=seconds) if seconds is not None else None
            results.append(
                TaskResult(
                    execution_id=ex.id,
                    task_id=task,
                    round=round,
                    attempt=n,
                    status=outcome,
                    started_at=start,
                    finished_at=end,
                )
            )
    checkpoints = [
        CheckpointState(
            execution_id=executions[i].id,
            stage=0,
            round=round,
            type="written",
            question="ok?",
            decision=decision,
            feedback=feedback,
        )
        for i, round, decision, feedback in decisions
    ]
    return executions, results, checkpoints


def write_as_v11(
    backend: Backend,
    executions: list[Execution],
    results: list[TaskResult],
    checkpoints: list[CheckpointState],
) -> None:
    """The rows as the code of schema version 11 wrote them."""
    p = "?" if backend.name == "sqlite" else "%s"
    with backend.connect() as db:
        for ex in executions:
            db.execute(
                "INSERT INTO executions (id, status, owner, heartbeat_at, updated_at,"
                f" lease_token, data, license_id) VALUES ({p}, {p}, NULL, NULL, {p}, 0, {p}, {p})",
                (
                    ex.id,
                    ex.status.value,
                    backend.dialect.dump_time(ex.updated_at),
                    json(ex, exclude={"owner", "heartbeat_at", "lease_token"}),
                    ex.license_id,
                ),
            )
        for r in results:
            db.execute(
                "INSERT INTO task_results (execution_id, task_id, round, attempt, status, data)"
                f" VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                (r.execution_id, r.task_id, r.round, r.attempt, r.status.value, json(r)),
            )
        for cp in checkpoints:
            db.execute(
                "INSERT INTO checkpoints (execution_id, stage, round, decision, data)"
                f" VALUES ({p}, {p}, {p}, {p}, {p})",
                (
                    cp.execution_id,
                    cp.stage,
                    cp.round,
                    cp.decision.value if cp.decision else None,
                    json(cp),
                ),
            )
        if backend.name == "sqlite":
            db.commit()


def views(backend: Backend) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Each learning view's column names and rows."""
    out = {}
    db = backend.connect()
    try:
        for name, order in LEARNING_VIEWS.items():
            cur = db.execute(f"SELECT * FROM {name} ORDER BY {order}")
            rows = [tuple(r) for r in cur.fetchall()]
            out[name] = ([d[0] for d in cur.description], rows)
    finally:
        db.close()
    return out


def statistics(store: Store) -> dict[str, Any]:
    """Everything the learning engine reads, durations to the millisecond."""

    def ms(value: float | None) -> float | None:
        return round(value, 3) if value is not None else None

    return {
        "tasks": [
            replace(s, p50_seconds=ms(s.p50_seconds), p90_seconds=ms(s.p90_seconds))
            for s in store.task_stats()
        ],
        "latest": store.task_stats("wf", window=2),
        "workflows": store.workflow_stats(),
        "checkpoints": store.checkpoint_stats(),
        "changes": store.change_requests(),
        "patterns": store.learned_patterns(),
        "seen": store.workflows_seen(),
    }


@pytest.fixture
def fresh_url(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Another empty store of the backend."""
    if backend.name == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'connectsw.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    yield f"{server}?options=-csearch_path%3D{schema}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def test_migration_12_fills_the_learning_columns_from_the_history_written_before(
    backend: Backend, opened: Callable[[str], Store], fresh_url: str
) -> None:
    with backend.connect() as db:  # a store at schema version 11
        if backend.name == "sqlite":
            db.execute("BEGIN IMMEDIATE")
            assert migrate(db, backend.dialect, "x", to=11) == list(range(1, 12))
            db.execute("COMMIT")
        else:
            with db.transaction():
                assert migrate(db, backend.dialect, "x", to=11) == list(range(1, 12))
    executions, results, checkpoints = learning_history()
    write_as_v11(backend, executions, results, checkpoints)
    before = views(backend)
    assert len(before["task_history"][1]) == 9  # the ghost task's attempt is no history

    migrated = opened(backend.url)  # migrations 12 and 13 run
    assert backend.rows("SELECT MAX(version) FROM schema_version") == [(LATEST,)]
    assert views(backend) == before  # the same columns and rows, now read from columns

    # The same history written through the store after migration 12 gives the same
    # statistics as the history the migration filled in.
    fresh = opened(fresh_url)
    for ex in executions:
        fresh.create_execution(ex)
    fresh.save_task_results(results)
    for cp in checkpoints:
        ex = next(e for e in executions if e.id == cp.execution_id)
        fresh.transition(ex, {ex.status}, checkpoint=cp)
    assert statistics(migrated) == statistics(fresh)
    tasks = {(s.workflow, s.task_id): s for s in migrated.task_stats()}
    assert (tasks["wf", "write"].runs, tasks["wf", "write"].attempts) == (2, 3)
    assert tasks["wf", "write"].p50_seconds == pytest.approx(2.0, abs=0.001)
    assert (tasks["other", "write"].agent, tasks["other", "write"].runs) == ("writer", 2)

    # An attempt written now for an execution planned before gets its plan's agent.
    again = results[0].model_copy(update={"round": 1})
    migrated.save_task_results([again])
    assert {(s.task_id, s.agent, s.runs) for s in migrated.task_stats("wf")} == {
        ("write", "writer", 3),
        ("check", "checker", 2),
    }


def test_migration_13_moves_each_plan_to_its_column_unchanged(
    backend: Backend, opened: Callable[[str], Store]
) -> None:
    """Plans are written once, in a column of their own: the executions written before
    read back the same, and their records no longer hold their plans."""
    with backend.connect() as db:  # a store at schema version 11
        if backend.name == "sqlite":
            db.execute("BEGIN IMMEDIATE")
            migrate(db, backend.dialect, "x", to=11)
            db.execute("COMMIT")
        else:
            with db.transaction():
                migrate(db, backend.dialect, "x", to=11)
    executions, _, _ = learning_history()
    write_as_v11(backend, executions, [], [])
    store = opened(backend.url)
    for ex in executions:
        got = store.get_execution(ex.id)
        assert got is not None
        assert got.model_dump(exclude={"owner", "heartbeat_at", "lease_token"}) == ex.model_dump(
            exclude={"owner", "heartbeat_at", "lease_token"}
        )
    text = "data" if backend.name == "sqlite" else "data::text"
    for data, plan in backend.rows(f"SELECT {text}, plan FROM executions"):
        assert '"plan"' not in str(data)
        assert "tasks" in str(plan)
    # A state change writes the record alone; the plan stays as it was.
    ex = executions[0]
    later = ex.model_copy(update={"error": "x"})
    store.transition(later, {ex.status})
    got = store.get_execution(ex.id)
    assert got is not None and got.error == "x" and got.plan == ex.plan
