"""What the execution history says, in SQL, for every backend (reference §2.4, issue 8 part 3).

A mixin of :class:`~connectsw.core.stores.sql.SQLStore`. The statistics read the
columns written beside each record as it is stored (migration 12: an execution's
``workflow``, each attempt's ``agent`` and ``duration_seconds``, each checkpoint's
``checkpoint_type`` and ``feedback``), through the index on executions' (workflow,
updated_at) and the records' primary keys: no JSON is parsed on a read. The views
``execution_history``, ``task_history``, ``checkpoint_history`` and
``learned_patterns`` (migrations 11 and 12) show the same columns to SQL analysts,
over the whole history. Definitions, used by :mod:`connectsw.core.learning`:

- The **window**: every statistic but :meth:`LearningRecords.learned_patterns` reads
  the latest ``window`` executions of each workflow (most recently updated first;
  ``learning.window``), so its cost stays flat as the history grows; 0: all of them.
  :meth:`LearningRecords.task_stats` may also keep only the plans of one name (the
  column ``plan_name``): task-graph files of other names are other programs.
- An **attempt** counts once it ended ``succeeded`` or ``failed`` (an attempt
  interrupted by a crash, cancelled or skipped says nothing about the task), and
  only for a task its execution's plan has (its agent is the plan's).
- A **run** is one round of one execution in which the task had such an attempt;
  it **succeeded** if one of its attempts did. ``retries`` = attempts - runs.
- Durations are seconds from an attempt's start to its end, of succeeded attempts;
  p50 and p90 are nearest-rank percentiles (the smallest duration with at least
  50 % / 90 % of the durations at or below it), computed with window functions.
- Approval rate: approved decisions / all decisions of a checkpoint type.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectsw.core.stores.dialects import Dialect

#: Task statuses that count as an attempt's outcome.
OUTCOMES = ("succeeded", "failed")
#: Execution statuses that count as a workflow's outcome.
FINISHED = ("completed", "failed", "gate_failed", "cancelled")


@dataclass(frozen=True)
class TaskStats:
    """One task of one workflow, run by one agent: its history."""

    workflow: str
    task_id: str
    agent: str
    runs: int
    succeeded_runs: int
    attempts: int
    failed_attempts: int
    p50_seconds: float | None
    """Median duration of its succeeded attempts (seconds); None if none has one."""
    p90_seconds: float | None

    @property
    def retries(self) -> int:
        """Attempts beyond the first of each run."""
        return self.attempts - self.runs

    @property
    def success_rate(self) -> float:
        """Runs that succeeded / runs (0..1)."""
        return self.succeeded_runs / self.runs if self.runs else 0.0

    @property
    def failure_rate(self) -> float:
        """Failed attempts / attempts (0..1): how failure-prone the task is."""
        return self.failed_attempts / self.attempts if self.attempts else 0.0


@dataclass(frozen=True)
class WorkflowStats:
    """One workflow's finished executions."""

    workflow: str
    executions: int
    completed: int
    failed: int
    cancelled: int

    @property
    def success_rate(self) -> float:
        """Completed / finished executions (0..1)."""
        return self.completed / self.executions if self.executions else 0.0


@dataclass(frozen=True)
class CheckpointStats:
    """One checkpoint type of one workflow: how people decided there."""

    workflow: str
    checkpoint: str
    decisions: int
    approved: int
    changes_requested: int
    cancelled: int

    @property
    def approval_rate(self) -> float:
        """Approved / decisions (0..1)."""
        return self.approved / self.decisions if self.decisions else 0.0


@dataclass(frozen=True)
class ChangeRequest:
    """A change people requested at a checkpoint, and how often (same text, trimmed)."""

    workflow: str
    checkpoint: str
    feedback: str
    count: int


@dataclass(frozen=True)
class LearnedPattern:
    """A row of the ``learned_patterns`` view (the reference's table of that name):
    ``success_rate`` in percent with two decimals, None for change requests."""

    pattern_type: str
    workflow: str
    subject: str
    agent: str | None
    frequency: int
    success_rate: float | None
    detail: str | None


def _recent(
    workflow: str | None, window: int, plan_name: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """A SELECT of (id, workflow, status) of the executions the statistics read: the
    latest ``window`` (0: all) of ``workflow`` (and of its plans named ``plan_name``, if
    given), or of each workflow; and its arguments."""
    if workflow is not None:
        select = "SELECT id, workflow, status FROM executions WHERE workflow = ?"
        where: tuple[Any, ...] = (workflow,)
        if plan_name is not None:
            select += " AND plan_name = ?"
            where += (plan_name,)
        if not window:
            return select, where
        return select + " ORDER BY updated_at DESC, id DESC LIMIT ?", (*where, window)
    if not window:
        return "SELECT id, workflow, status FROM executions WHERE workflow IS NOT NULL", ()
    return (
        "SELECT id, workflow, status FROM (SELECT id, workflow, status, ROW_NUMBER() OVER"
        " (PARTITION BY workflow ORDER BY updated_at DESC, id DESC) AS latest"
        " FROM executions WHERE workflow IS NOT NULL) w WHERE latest <= ?",
        (window,),
    )


def _placeholders(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v + "'" for v in values)  # constants of this module only


_TASK_STATS = f"""
WITH e AS ({{recent}}), a AS (
  SELECT e.workflow, tr.task_id, tr.agent, tr.execution_id, tr.round, tr.status,
    tr.duration_seconds
  FROM e JOIN task_results tr ON tr.execution_id = e.id
  WHERE tr.agent IS NOT NULL AND tr.status IN ({_placeholders(OUTCOMES)})
), runs AS (
  SELECT workflow, task_id, agent, COUNT(*) AS attempts,
    SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
    MAX(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded
  FROM a GROUP BY workflow, task_id, agent, execution_id, round
), r AS (
  SELECT workflow, task_id, agent, COUNT(*) AS runs, SUM(succeeded) AS succeeded_runs,
    SUM(attempts) AS attempts, SUM(failed) AS failed_attempts
  FROM runs GROUP BY workflow, task_id, agent
), d AS (
  SELECT workflow, task_id, agent, duration_seconds,
    ROW_NUMBER() OVER (PARTITION BY workflow, task_id, agent ORDER BY duration_seconds) AS rn,
    COUNT(*) OVER (PARTITION BY workflow, task_id, agent) AS n
  FROM a WHERE status = 'succeeded' AND duration_seconds IS NOT NULL
), p AS (
  SELECT workflow, task_id, agent,
    MIN(CASE WHEN rn * 2 >= n THEN duration_seconds END) AS p50,
    MIN(CASE WHEN rn * 10 >= n * 9 THEN duration_seconds END) AS p90
  FROM d GROUP BY workflow, task_id, agent
)
SELECT r.workflow, r.task_id, r.agent, r.runs, r.succeeded_runs, r.attempts,
  r.failed_attempts, p.p50, p.p90
FROM r LEFT JOIN p ON p.workflow = r.workflow AND p.task_id = r.task_id AND p.agent = r.agent
ORDER BY r.workflow, r.task_id, r.agent
"""

#: The decided checkpoints of the window's executions.
_DECIDED = (
    "WITH e AS ({recent}), c AS (SELECT e.workflow, cp.checkpoint_type AS checkpoint,"
    " cp.decision, cp.feedback FROM e JOIN checkpoints cp ON cp.execution_id = e.id"
    " WHERE cp.decision IS NOT NULL) "
)


class LearningRecords:
    """Statistics of the execution history (the SQL of the learning engine)."""

    dialect: Dialect

    if TYPE_CHECKING:  # provided by SQLStore

        def _tx(self, write: bool = True, opening: bool = False) -> AbstractContextManager[Any]: ...

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._tx(write=False) as db:
            return list(db.execute(self.dialect.sql(sql), args).fetchall())

    def task_stats(
        self, workflow: str | None = None, window: int = 0, plan_name: str | None = None
    ) -> list[TaskStats]:
        """Per workflow, task id and agent: runs, attempts, failures, p50/p90 seconds, over
        the latest ``window`` executions of each workflow (0: all); with ``plan_name`` (and
        ``workflow``), only of the plans of that name."""
        recent, args = _recent(workflow, window, plan_name)
        rows = self._rows(_TASK_STATS.format(recent=recent), args)
        return [
            TaskStats(
                workflow=str(r[0]),
                task_id=str(r[1]),
                agent=str(r[2]),
                runs=int(r[3]),
                succeeded_runs=int(r[4]),
                attempts=int(r[5]),
                failed_attempts=int(r[6]),
                p50_seconds=float(r[7]) if r[7] is not None else None,
                p90_seconds=float(r[8]) if r[8] is not None else None,
            )
            for r in rows
        ]

    def workflow_stats(self, workflow: str | None = None, window: int = 0) -> list[WorkflowStats]:
        """Per workflow: finished executions (of the latest ``window``) by outcome."""
        recent, args = _recent(workflow, window)
        rows = self._rows(
            f"WITH e AS ({recent}) SELECT workflow, COUNT(*),"
            " SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status IN ('failed', 'gate_failed') THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)"
            f" FROM e WHERE status IN ({_placeholders(FINISHED)})"
            " GROUP BY workflow ORDER BY workflow",
            args,
        )
        return [WorkflowStats(str(r[0]), *(int(v) for v in r[1:])) for r in rows]

    def checkpoint_stats(
        self, workflow: str | None = None, window: int = 0
    ) -> list[CheckpointStats]:
        """Per workflow and checkpoint type: decisions, approvals, change requests (in the
        latest ``window`` executions)."""
        recent, args = _recent(workflow, window)
        rows = self._rows(
            _DECIDED.format(recent=recent) + "SELECT workflow, checkpoint, COUNT(*),"
            " SUM(CASE WHEN decision = 'approve' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN decision = 'request_changes' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN decision = 'cancel' THEN 1 ELSE 0 END)"
            " FROM c GROUP BY workflow, checkpoint ORDER BY workflow, checkpoint",
            args,
        )
        return [CheckpointStats(str(r[0]), str(r[1]), *(int(v) for v in r[2:])) for r in rows]

    def change_requests(
        self, workflow: str | None = None, limit: int = 10, window: int = 0
    ) -> list[ChangeRequest]:
        """The most requested changes (same trimmed text), most frequent first (in the
        latest ``window`` executions)."""
        recent, args = _recent(workflow, window)
        rows = self._rows(
            _DECIDED.format(recent=recent)
            + "SELECT workflow, checkpoint, TRIM(feedback) AS text, COUNT(*) AS n FROM c"
            " WHERE decision = 'request_changes' AND feedback IS NOT NULL"
            " GROUP BY workflow, checkpoint, TRIM(feedback)"
            " ORDER BY n DESC, workflow, checkpoint, text LIMIT ?",
            (*args, limit),
        )
        return [ChangeRequest(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def learned_patterns(self, limit: int = 1_000_000) -> list[LearnedPattern]:
        """Rows of the ``learned_patterns`` view, most frequent first."""
        rows = self._rows(
            "SELECT pattern_type, workflow, subject, agent, frequency, success_rate, detail"
            " FROM learned_patterns"
            " ORDER BY pattern_type, frequency DESC, workflow, subject, detail LIMIT ?",
            (limit,),
        )
        return [
            LearnedPattern(
                pattern_type=str(r[0]),
                workflow=str(r[1]),
                subject=str(r[2]),
                agent=r[3],
                frequency=int(r[4]),
                success_rate=float(r[5]) if r[5] is not None else None,
                detail=r[6],
            )
            for r in rows
        ]

    def workflows_seen(self) -> list[str]:
        """The workflows of every stored execution."""
        rows = self._rows(
            "SELECT DISTINCT workflow FROM executions WHERE workflow IS NOT NULL ORDER BY workflow",
            (),
        )
        return [str(r[0]) for r in rows]
