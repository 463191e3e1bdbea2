"""Versioned schema migrations, applied when a store opens (as Alembic and Django do).

The ``schema_version`` table holds one row per applied migration; the store's
version is the highest. Opening a store reads the version with a plain read and
writes nothing when it is current; otherwise, under the backend's write lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), it reads the version
again and applies the missing migrations in the same transaction, so two
processes opening a fresh store at once apply each migration once. A database
whose version is above :data:`LATEST` (written by a newer connectsw) is refused.

**Adding a table or column is one entry:** append a :class:`Migration` with the
next version to :data:`MIGRATIONS`. Its statements are SQL with the dialect's
DDL words in braces (``{json}``, ``{time}``, ``{serial_pk}``, ``{written_column}``:
:attr:`connectsw.core.stores.dialects.Dialect.types`) or functions of the dialect
returning SQL. Never edit a migration that has shipped; write a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectsw.core.errors import StoreError
from connectsw.core.stores.dialects import Dialect

Statement = str | Callable[[Dialect], str | list[str]]


@dataclass(frozen=True)
class Migration:
    """One schema version: the statements that take a store from ``version - 1`` to it."""

    version: int
    description: str
    statements: tuple[Statement, ...]

    def sql(self, dialect: Dialect) -> list[str]:
        """The statements in ``dialect``'s text (a function may give several)."""
        out: list[str] = []
        for s in self.statements:
            text = s(dialect) if callable(s) else s.format(**dialect.types)
            out += [text] if isinstance(text, str) else text
        return out


# -- migration 11: the learning engine's views (reference §2.4, issue 8 part 3) ----------
# Plain views over the executions' records, so that they are never out of date and
# SQL analysts can read them on the store itself; core/stores/learning.py queries them.


def _plan(d: Dialect, key: str) -> str:
    return d.json_text("e.data", "plan", key)


def _execution_history(d: Dialect) -> str:
    return d.create_view(
        "execution_history",
        f"SELECT e.id AS execution_id, {_plan(d, 'workflow')} AS workflow,"
        f" {_plan(d, 'name')} AS plan_name, e.license_id, e.status, e.updated_at"
        " FROM executions e",
    )


def _task_history(d: Dialect) -> str:
    # One row per attempt, with the agent its plan gave the task; duration_seconds is
    # NULL until the attempt has both a start and an end.
    duration = d.seconds_between(
        d.json_text("tr.data", "started_at"), d.json_text("tr.data", "finished_at")
    )
    return d.create_view(
        "task_history",
        f"SELECT tr.execution_id, {_plan(d, 'workflow')} AS workflow,"
        f" {_plan(d, 'name')} AS plan_name, e.license_id, tr.task_id,"
        f" {d.json_text('pt.value', 'agent')} AS agent, tr.round, tr.attempt, tr.status,"
        f" {duration} AS duration_seconds"
        f" FROM executions e CROSS JOIN {d.json_elements('e.data', ('plan', 'tasks'), 'pt')}"
        " JOIN task_results tr ON tr.execution_id = e.id"
        f" AND tr.task_id = {d.json_text('pt.value', 'id')}",
    )


def _checkpoint_history(d: Dialect) -> str:
    return d.create_view(
        "checkpoint_history",
        f"SELECT c.execution_id, {_plan(d, 'workflow')} AS workflow,"
        f" {_plan(d, 'name')} AS plan_name, e.license_id, c.stage, c.round,"
        f" {d.json_text('c.data', 'type')} AS checkpoint, c.decision,"
        f" {d.json_text('c.data', 'feedback')} AS feedback"
        " FROM checkpoints c JOIN executions e ON e.id = c.execution_id",
    )


def _rate(condition: str) -> str:
    """Percent of the group's rows meeting ``condition``, two decimals (DECIMAL(5,2))."""
    return f"ROUND(100.0 * SUM(CASE WHEN {condition} THEN 1 ELSE 0 END) / COUNT(*), 2)"


def _learned_patterns(d: Dialect) -> str:
    # The reference's learned_patterns (pattern_type, frequency, success_rate in percent),
    # derived from the history: its JSONB pattern_data is spelled out as columns.
    completed = _rate("status = 'completed'")
    succeeded = _rate("status = 'succeeded'")
    approved = _rate("decision = 'approve'")
    return d.create_view(
        "learned_patterns",
        "SELECT 'workflow_outcome' AS pattern_type, workflow, workflow AS subject,"
        " NULL AS agent, COUNT(*) AS frequency,"
        f" {completed} AS success_rate, NULL AS detail"
        " FROM execution_history"
        " WHERE status IN ('completed', 'failed', 'gate_failed', 'cancelled')"
        " GROUP BY workflow"
        " UNION ALL"
        " SELECT 'task_outcome', workflow, task_id, agent, COUNT(*),"
        f" {succeeded}, NULL"
        " FROM task_history WHERE status IN ('succeeded', 'failed')"
        " GROUP BY workflow, task_id, agent"
        " UNION ALL"
        " SELECT 'checkpoint_approval', workflow, checkpoint, NULL, COUNT(*),"
        f" {approved}, NULL"
        " FROM checkpoint_history WHERE decision IS NOT NULL"
        " GROUP BY workflow, checkpoint"
        " UNION ALL"
        " SELECT 'change_request', workflow, checkpoint, NULL, COUNT(*), NULL, TRIM(feedback)"
        " FROM checkpoint_history WHERE decision = 'request_changes' AND feedback IS NOT NULL"
        " GROUP BY workflow, checkpoint, TRIM(feedback)",
    )


# -- migration 12: the history's statistics read columns, not the plans' JSON -----------
# Migration 11's views parsed every execution's plan to find each task's agent, on every
# read: 0.5 s per new plan at 2,000 executions (bench/learning_stats.py). What they need
# is now written beside each record as it is stored (core/stores/sql.py): the workflow and
# plan name of an execution, one plan_tasks row per planned task (its agent), the agent
# and duration of each attempt, the type and feedback of each checkpoint. Rows written
# before are filled here once, from the same JSON; the views keep their names and columns.


def _backfill_plan_tasks(d: Dialect) -> str:
    task_id, agent = d.json_text("pt.value", "id"), d.json_text("pt.value", "agent")
    return (
        "INSERT INTO plan_tasks (execution_id, task_id, agent)"
        f" SELECT e.id, {task_id}, {agent}"
        f" FROM executions e CROSS JOIN {d.json_elements('e.data', ('plan', 'tasks'), 'pt')}"
        f" WHERE {task_id} IS NOT NULL AND {agent} IS NOT NULL"
        " ON CONFLICT (execution_id, task_id) DO NOTHING"
    )


def _backfill_attempts(d: Dialect) -> str:
    start, end = d.json_text("data", "started_at"), d.json_text("data", "finished_at")
    duration = d.seconds_between(start, end)
    return (
        "UPDATE task_results SET agent = (SELECT p.agent FROM plan_tasks p"
        " WHERE p.execution_id = task_results.execution_id AND p.task_id = task_results.task_id),"
        f" duration_seconds = {duration}"
    )


def _history_views(d: Dialect) -> list[str]:
    # The same columns as migration 11's, from columns. An attempt of a task its plan
    # does not have (no agent) is not history, as before.
    execution = " e.workflow, e.plan_name, e.license_id,"
    return [
        *d.replace_view(
            "execution_history",
            f"SELECT e.id AS execution_id,{execution} e.status, e.updated_at FROM executions e",
        ),
        *d.replace_view(
            "task_history",
            f"SELECT tr.execution_id,{execution} tr.task_id, tr.agent, tr.round, tr.attempt,"
            " tr.status, tr.duration_seconds"
            " FROM task_results tr JOIN executions e ON e.id = tr.execution_id"
            " WHERE tr.agent IS NOT NULL",
        ),
        *d.replace_view(
            "checkpoint_history",
            f"SELECT c.execution_id,{execution} c.stage, c.round,"
            " c.checkpoint_type AS checkpoint, c.decision, c.feedback"
            " FROM checkpoints c JOIN executions e ON e.id = c.execution_id",
        ),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    # The schema every store had before versions were recorded: a database made
    # then has these tables already and no schema_version (version 0).
    Migration(
        1,
        "executions, task results, checkpoints, gate results, events",
        (
            """CREATE TABLE IF NOT EXISTS executions (
                id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                owner TEXT,
                heartbeat_at {time},
                updated_at {time} NOT NULL,
                data {json} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS executions_updated ON executions (updated_at)",
            """CREATE TABLE IF NOT EXISTS task_results (
                execution_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                round INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                {written_column}
                data {json} NOT NULL,
                PRIMARY KEY (execution_id, task_id, round, attempt)
            )""",
            """CREATE TABLE IF NOT EXISTS checkpoints (
                execution_id TEXT NOT NULL,
                stage INTEGER NOT NULL,
                round INTEGER NOT NULL,
                data {json} NOT NULL,
                PRIMARY KEY (execution_id, stage, round)
            )""",
            """CREATE TABLE IF NOT EXISTS gate_results (
                execution_id TEXT NOT NULL,
                stage INTEGER NOT NULL,
                round INTEGER NOT NULL,
                data {json} NOT NULL,
                PRIMARY KEY (execution_id, stage, round)
            )""",
            """CREATE TABLE IF NOT EXISTS events (
                seq {serial_pk},
                execution_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                data {json} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id, seq)",
        ),
    ),
    Migration(
        2,
        "fencing tokens, checkpoint decisions as a column",
        (
            "ALTER TABLE executions ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0",
            # NULL until decided: a decision is one conditional UPDATE ... WHERE decision IS NULL.
            "ALTER TABLE checkpoints ADD COLUMN decision TEXT",
            lambda d: f"UPDATE checkpoints SET decision = {d.json_text('data', 'decision')}",
            # No index on task_results.status: running attempts are found through the
            # primary key's execution_id prefix, and every task write would pay for one.
        ),
    ),
    Migration(
        3,
        "the process group of a running gate command",
        # JSON text of a ProcessRef while the owner's gate runs a command, else NULL.
        ("ALTER TABLE executions ADD COLUMN gate_process TEXT",),
    ),
    Migration(
        4,
        "licenses (public id, key digest, status; never a key)",
        (
            """CREATE TABLE IF NOT EXISTS licenses (
                id TEXT PRIMARY KEY,
                key_digest TEXT NOT NULL UNIQUE,
                status TEXT NOT NULL,
                updated_at {time} NOT NULL,
                data {json} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS licenses_updated ON licenses (updated_at)",
        ),
    ),
    Migration(
        5,
        "sessions of licenses (token digests, never tokens)",
        (
            """CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                license_id TEXT NOT NULL,
                token_digest TEXT NOT NULL UNIQUE,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                created_at {time} NOT NULL,
                heartbeat_at {time} NOT NULL,
                expires_at {time} NOT NULL,
                ended_at {time}
            )""",
            "CREATE INDEX IF NOT EXISTS sessions_license ON sessions (license_id, heartbeat_at)",
        ),
    ),
    Migration(
        6,
        "security events: licenses flagged by the multi-IP and session checks",
        (
            """CREATE TABLE IF NOT EXISTS security_events (
                id {serial_pk},
                ts {time} NOT NULL,
                license_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                data {json} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS security_events_license"
            " ON security_events (license_id, ts)",
        ),
    ),
    Migration(
        7,
        "the license that owns an execution (server mode; NULL in local mode)",
        (
            "ALTER TABLE executions ADD COLUMN license_id TEXT",
            "CREATE INDEX IF NOT EXISTS executions_license ON executions (license_id, updated_at)",
        ),
    ),
    Migration(
        8,
        'audit log: one row per API request (reference "Audit Logging"; never a key)',
        (
            # event_id is the request's usage event id: replaying the usage log after
            # a crash inserts each request once (ON CONFLICT DO NOTHING).
            """CREATE TABLE IF NOT EXISTS audit_log (
                event_id TEXT PRIMARY KEY,
                ts {time} NOT NULL,
                license_id TEXT,
                user_id TEXT,
                session_id TEXT,
                method TEXT NOT NULL,
                endpoint TEXT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                status SMALLINT NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                error_code TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts)",
            "CREATE INDEX IF NOT EXISTS audit_log_license ON audit_log (license_id, ts)",
        ),
    ),
    Migration(
        9,
        "outbox: e-mails queued by the anti-piracy response tiers (never a key)",
        (
            # dedupe_key names the finding and tier a message answers: applying the same
            # action twice inserts nothing the second time (ON CONFLICT DO NOTHING).
            """CREATE TABLE IF NOT EXISTS outbox (
                id {serial_pk},
                created_at {time} NOT NULL,
                license_id TEXT NOT NULL,
                to_addr TEXT NOT NULL,
                subject TEXT NOT NULL,
                body TEXT NOT NULL,
                dedupe_key TEXT NOT NULL UNIQUE,
                sent_at {time},
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, id)",
            "CREATE INDEX IF NOT EXISTS outbox_license ON outbox (license_id, id)",
        ),
    ),
    Migration(
        10,
        "language-model use of each task attempt (calls, tokens in and out, cost)",
        (
            # Columns beside the record's JSON so an execution's totals are one SUM.
            "ALTER TABLE task_results ADD COLUMN llm_calls INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE task_results ADD COLUMN tokens_in BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE task_results ADD COLUMN tokens_out BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE task_results ADD COLUMN cost DOUBLE PRECISION NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        11,
        "learning views: execution, task and checkpoint history; learned_patterns",
        (_execution_history, _task_history, _checkpoint_history, _learned_patterns),
    ),
    Migration(
        12,
        "learning history as columns: workflow, plan tasks' agents, attempt durations",
        (
            "ALTER TABLE executions ADD COLUMN workflow TEXT",
            "ALTER TABLE executions ADD COLUMN plan_name TEXT",
            lambda d: (
                "UPDATE executions SET"
                f" workflow = {d.json_text('data', 'plan', 'workflow')},"
                f" plan_name = {d.json_text('data', 'plan', 'name')}"
            ),
            # The statistics read a workflow's latest executions (learning.window).
            "CREATE INDEX IF NOT EXISTS executions_workflow"
            " ON executions (workflow, updated_at, id)",
            # One row per task of a plan (plans never change once stored): an attempt's
            # agent is looked up here by key when the attempt is written.
            """CREATE TABLE IF NOT EXISTS plan_tasks (
                execution_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                agent TEXT NOT NULL,
                PRIMARY KEY (execution_id, task_id)
            )""",
            _backfill_plan_tasks,
            "ALTER TABLE task_results ADD COLUMN agent TEXT",
            # Seconds from the attempt's start to its end; NULL until it has both.
            "ALTER TABLE task_results ADD COLUMN duration_seconds DOUBLE PRECISION",
            _backfill_attempts,
            # What the statistics read of an execution's attempts, without reading the
            # records (SQLite keeps the added columns after the JSON, on overflow pages
            # when a record is large).
            "CREATE INDEX IF NOT EXISTS task_results_history ON task_results"
            " (execution_id, status, task_id, agent, round, duration_seconds)",
            "ALTER TABLE checkpoints ADD COLUMN checkpoint_type TEXT",
            "ALTER TABLE checkpoints ADD COLUMN feedback TEXT",
            lambda d: (
                "UPDATE checkpoints SET"
                f" checkpoint_type = {d.json_text('data', 'type')},"
                f" feedback = {d.json_text('data', 'feedback')}"
            ),
            _history_views,
        ),
    ),
    Migration(
        13,
        "an execution's plan in a column of its own, written once",
        (
            # A plan never changes once stored: each state change rewrote it with the
            # rest of the record (2.5 MB at 10,000 tasks), and each read parsed it.
            "ALTER TABLE executions ADD COLUMN plan {json}",
            lambda d: (
                f"UPDATE executions SET plan = {d.json_member('data', 'plan')},"
                f" data = {d.json_without('data', 'plan')}"
            ),
        ),
    ),
)

#: The schema version this code writes.
LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {time} NOT NULL
)"""


def current_version(db: Any, dialect: Dialect) -> int:
    """The store's schema version (0: no schema_version table). A read only."""
    if not dialect.table_exists(db, "schema_version"):
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def check_known(version: int, where: str) -> None:
    """Refuse a database written by a newer connectsw (:class:`StoreError`)."""
    if version > LATEST:
        raise StoreError(
            f"the store at {where} has schema version {version}, newer than this"
            f" connectsw knows ({LATEST}): upgrade connectsw to use it"
        )


def migrate(db: Any, dialect: Dialect, where: str, to: int = LATEST) -> list[int]:
    """Apply the missing migrations (up to version ``to``) in ``db``'s open write
    transaction; returns their versions.

    The caller holds the backend's write lock, so the version read here is final.
    """
    dialect.lock_schema(db)
    version = current_version(db, dialect)
    check_known(version, where)
    todo = [m for m in MIGRATIONS if version < m.version <= to]
    if not todo:
        return []
    db.execute(_VERSION_TABLE.format(**dialect.types))
    insert = dialect.sql(
        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)"
    )
    now = dialect.dump_time(datetime.now(UTC))
    for migration in todo:
        for statement in migration.sql(dialect):
            db.execute(statement)
        db.execute(insert, (migration.version, migration.description, now))
    return [m.version for m in todo]
