"""The learning engine: what the execution history changes in new plans (reference §2.4).

Issue 8 part 3, DESIGN.md's "Intelligence layer". The statistics come from the
relational store's SQL (:mod:`connectsw.core.stores.learning`: runs, success
rates, retries, p50/p90 durations in seconds, approval rates, change requests per
workflow, task and agent). :func:`learn_plan` uses them when a plan is made:

- **Estimates** (the reference's "Estimate generator"): each task's
  ``learned.estimated_seconds`` is the p50 of its succeeded attempts in the same
  workflow (same task id and agent) once it has ``learning.min_runs`` runs, else
  ``learning.default_task_seconds``; the plan's ``estimated_seconds`` sums, over
  stages, the longest chain of estimates in each stage (its tasks run in
  parallel), and ``estimated_duration`` says p50 to p90 for people (``"2-4 min"``).
  Time waiting at checkpoints is not included.
- **Extra retries** (the reference's "Error prediction"): a task with at least
  ``learning.min_runs`` runs whose failed attempts / attempts is at least
  ``learning.failure_rate`` gets ``learning.extra_retries`` more retries than it
  asked for (its own ``retries``, else ``engine.default_retries``), at most 20.
  Except retries a person wrote in a task-graph file (:data:`PER_PLAN_WORKFLOWS`),
  ``0`` included: they are never changed, as the work may not be safe to run twice
  (issue 5's trial). A workflow's own retries (the built-in ones ask for 1) are its
  defaults, which learning may raise.
- **Whose history**: a task's statistics are those of the same task id and agent in
  the plan's workflow; for task-graph files (:data:`PER_PLAN_WORKFLOWS`), in graphs of
  the same ``name`` only, as unrelated graphs reuse ids like ``a`` or ``build``.
- **Preferences** (feedback loop): feedback given at a checkpoint is a
  ``preference`` memory of the project (:func:`connectsw.core.memory_auto.remember_feedback`,
  source ``EXECUTION:CHECKPOINT_TYPE:ROUND``). The next plan of the same project
  gives each task of the stage that ends at a checkpoint of that type the
  preferences that were change requests (``learned.preferences``), so its agents
  apply them the first time. A preference forgotten or purged from memory is no
  longer applied.

The history read is the latest ``learning.window`` executions of the plan's workflow
(of task graphs: of that name; 0: all of them), so a plan costs the same at 200 or
200,000 past executions and the statistics follow what the tasks do now;
``connectsw insights`` reads the same window.

Learning never stops a plan: a failure to read the history or memory is logged
and the plan goes on without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from connectsw.conf.settings import LearningSettings, Settings
from connectsw.core.models import ApiModel, Execution, Plan, TaskLearning, TaskSpec
from connectsw.core.stores import Store
from connectsw.core.stores.learning import TaskStats

log = logging.getLogger("connectsw.learning")

#: Most retries a task may have (TaskSpec.retries' bound).
MAX_RETRIES = 20

#: Workflows whose plans are unrelated programs: their history is per plan name.
PER_PLAN_WORKFLOWS = frozenset({"task-graph"})


def failure_prone(stats: TaskStats | None, settings: LearningSettings) -> bool:
    """Whether a task's history makes it failure-prone (see the module docstring)."""
    return (
        stats is not None
        and stats.runs >= settings.min_runs
        and stats.failure_rate >= settings.failure_rate
    )


def task_learning(
    task: TaskSpec,
    stats: TaskStats | None,
    settings: Settings,
    preferences: list[str],
    *,
    authored: bool = False,
) -> tuple[TaskLearning, int | None]:
    """A task's learning and its retries (None: unchanged).

    ``authored``: the task's ``retries`` were written by a person (a task-graph
    file), so a value there is kept as written."""
    learning = settings.learning
    known = stats is not None and stats.runs >= learning.min_runs
    p50 = stats.p50_seconds if known and stats is not None else None
    if p50 is not None and stats is not None:
        estimate = p50
        p90 = max(stats.p90_seconds or p50, p50)
        basis = "history"
    else:
        estimate = p90 = float(learning.default_task_seconds)
        basis = "default"
    retries = None
    extra = 0
    # Retries a person wrote (even 0: the work may not be idempotent) are kept.
    kept = authored and task.retries is not None
    if not kept and failure_prone(stats, learning) and learning.extra_retries:
        asked = task.retries if task.retries is not None else settings.engine.default_retries
        retries = min(MAX_RETRIES, asked + learning.extra_retries)
        extra = retries - asked
    return (
        TaskLearning(
            estimated_seconds=round(estimate, 3),
            p90_seconds=round(p90, 3),
            runs=stats.runs if stats is not None else 0,
            basis=basis,
            failure_rate=round(stats.failure_rate, 4) if known and stats is not None else None,
            extra_retries=extra,
            preferences=preferences,
        ),
        retries,
    )


def critical_path(plan: Plan, seconds: dict[str, float]) -> float:
    """Seconds: over stages, the sum of each stage's longest chain of ``seconds`` (tasks
    of a stage in any order; ``needs`` outside the stage ran in an earlier one)."""
    total = 0.0
    for stage in plan.stages:
        members = set(stage.task_ids)
        finish: dict[str, float] = {}
        for root in stage.task_ids:
            stack = [root]
            while stack:  # depth first, without recursion (a stage may be long chains)
                tid = stack[-1]
                if tid in finish:
                    stack.pop()
                    continue
                needs = [n for n in plan.task(tid).needs if n in members]
                todo = [n for n in needs if n not in finish]
                if todo:
                    stack.extend(todo)  # the plan was validated: no cycle
                    continue
                stack.pop()
                before = max((finish[n] for n in needs), default=0.0)
                finish[tid] = before + seconds.get(tid, 0.0)
        total += max(finish.values(), default=0.0)
    return total


#: (below this many seconds, unit, seconds per unit) for :func:`human_duration`.
_UNITS = ((90.0, "s", 1), (5400.0, "min", 60), (129_600.0, "h", 3600), (math.inf, "days", 86_400))


def human_duration(low: float, high: float) -> str:
    """``"about 40 s"``, ``"2-4 min"``, ``"1-3 h"``, ``"2-3 days"``: p50 to p90 in one unit."""
    unit, size = next((u, n) for limit, u, n in _UNITS if high < limit)
    lo = max(1, round(low / size))
    hi = max(lo, math.ceil(high / size - 1e-9))
    return f"about {lo} {unit}" if lo == hi else f"{lo}-{hi} {unit}"


def _stage_of_checkpoints(plan: Plan) -> dict[str, int]:
    return {s.checkpoint.type: s.index for s in plan.stages if s.checkpoint is not None}


def checkpoint_of(source: str) -> tuple[str, str, int] | None:
    """(execution id, checkpoint type, round) of a feedback memory's source
    (``EXECUTION:TYPE:ROUND``, :func:`connectsw.core.memory_auto.remember_feedback`)."""
    parts = source.split(":")
    if len(parts) == 3 and parts[0].startswith("exec_") and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return None


def project_preferences(settings: Settings, project: str, store: Store) -> list[tuple[str, str]]:
    """(checkpoint type, text) of the project's live preferences that were change requests
    (the store's checkpoint named by the memory's source was decided ``request_changes``;
    a note given with an approval is not), oldest first. Empty when no memory was ever
    written (no database is opened then)."""
    from connectsw.core.memory import memory_exists, open_memory

    if not memory_exists(settings):
        return []
    decided: dict[str, dict[tuple[str, int], str | None]] = {}
    found = []
    for record in open_memory(settings).records(project):
        where = checkpoint_of(record.source)
        if record.type != "preference" or where is None:
            continue
        execution_id, checkpoint, round = where
        if execution_id not in decided:
            decided[execution_id] = {
                (cp.type, cp.round): cp.decision.value if cp.decision else None
                for cp in store.checkpoints(execution_id)
            }
        if decided[execution_id].get((checkpoint, round)) == "request_changes":
            found.append((checkpoint, record.content.strip()))
    return found


def _preferences_by_task(plan: Plan, preferences: Iterable[tuple[str, str]], keep: int) -> Any:
    stage_of = _stage_of_checkpoints(plan)
    by_stage: dict[int, list[str]] = {}
    for checkpoint, text in preferences:
        index = stage_of.get(checkpoint)
        if index is not None and text and text not in by_stage.setdefault(index, []):
            by_stage[index].append(text)
    return {
        tid: by_stage[s.index][-keep:] if keep else []
        for s in plan.stages
        if s.index in by_stage
        for tid in s.task_ids
    }


def learn_plan(execution: Execution, store: Store, settings: Settings) -> Plan:
    """``execution.plan`` with what the history says applied (see the module docstring).

    Reads the store's statistics of the plan's workflow and, for preferences, the
    memory of the execution's project (:func:`connectsw.core.memory_auto.project_key`).
    Returns the plan unchanged when ``learning.enabled`` is false.
    """
    from connectsw.core.memory_auto import project_key

    learning = settings.learning
    plan = execution.plan
    if not learning.enabled:
        return plan
    try:
        name = plan.name if plan.workflow in PER_PLAN_WORKFLOWS else None
        found_stats = store.task_stats(plan.workflow, learning.window, plan_name=name)
        stats = {(s.task_id, s.agent): s for s in found_stats}
    except Exception as exc:
        log.warning("plan %s: history not read: %s", plan.name, exc)
        stats = {}
    preferences: dict[str, list[str]] = {}
    if learning.preferences and learning.max_preferences:
        try:
            found = project_preferences(settings, project_key(execution), store)
            preferences = _preferences_by_task(plan, found, learning.max_preferences)
        except Exception as exc:
            log.warning("plan %s: preferences not read: %s", plan.name, exc)
    tasks = []
    for task in plan.tasks:
        learned, retries = task_learning(
            task,
            stats.get((task.id, task.agent)),
            settings,
            preferences.get(task.id, []),
            authored=plan.workflow in PER_PLAN_WORKFLOWS,
        )
        update: dict[str, Any] = {"learned": learned}
        if retries is not None:
            update["retries"] = retries
        tasks.append(task.model_copy(update=update))
    learned_plan = plan.model_copy(update={"tasks": tasks})
    p50 = {t.id: t.learned.estimated_seconds for t in tasks if t.learned is not None}
    p90 = {t.id: t.learned.p90_seconds for t in tasks if t.learned is not None}
    low, high = critical_path(learned_plan, p50), critical_path(learned_plan, p90)
    learned_plan.estimated_seconds = round(low, 3)
    learned_plan.estimated_duration = human_duration(low, high)
    return learned_plan


# -- insights (``connectsw insights``) ---------------------------------------------------


class TaskInsight(ApiModel):
    """One task of a workflow, run by one agent (rates 0..1, durations in seconds)."""

    workflow: str
    task_id: str
    agent: str
    runs: int
    success_rate: float
    attempts: int
    retries: int
    failure_rate: float
    p50_seconds: float | None
    p90_seconds: float | None


class WorkflowInsight(ApiModel):
    """One workflow's finished executions (success rate 0..1)."""

    workflow: str
    executions: int
    completed: int
    failed: int
    cancelled: int
    success_rate: float


class CheckpointInsight(ApiModel):
    """Decisions at one checkpoint type of a workflow (approval rate 0..1)."""

    workflow: str
    checkpoint: str
    decisions: int
    approved: int
    changes_requested: int
    cancelled: int
    approval_rate: float


class ChangeRequestInsight(ApiModel):
    """A change people requested at a checkpoint, and how many times."""

    workflow: str
    checkpoint: str
    feedback: str
    count: int


class WeakSpot(ApiModel):
    """A failure-prone task (it gets extra retries) or a checkpoint approved in fewer
    than half of at least ``learning.min_runs`` decisions."""

    kind: str
    """``failure_prone_task`` or ``often_sent_back``."""
    workflow: str
    subject: str
    """The task id, or the checkpoint type."""
    rate: float
    """Its failure rate, or its approval rate (0..1)."""
    detail: str


class Insights(ApiModel):
    """``connectsw insights --json``: the history, per workflow, task, agent, checkpoint."""

    workflow: str | None
    min_runs: int
    failure_rate_threshold: float
    extra_retries: int
    workflows: list[WorkflowInsight]
    tasks: list[TaskInsight]
    checkpoints: list[CheckpointInsight]
    change_requests: list[ChangeRequestInsight]
    weak_spots: list[WeakSpot]


def insights(store: Store, settings: Settings, workflow: str | None = None) -> Insights:
    """The statistics of the history (of one workflow; the latest ``learning.window``
    executions of each), with its weak spots."""
    learning = settings.learning
    window = learning.window
    stats = store.task_stats(workflow, window)
    tasks = [
        TaskInsight(
            workflow=s.workflow,
            task_id=s.task_id,
            agent=s.agent,
            runs=s.runs,
            success_rate=round(s.success_rate, 4),
            attempts=s.attempts,
            retries=s.retries,
            failure_rate=round(s.failure_rate, 4),
            p50_seconds=_round(s.p50_seconds),
            p90_seconds=_round(s.p90_seconds),
        )
        for s in stats
    ]
    checkpoints = [
        CheckpointInsight(
            workflow=c.workflow,
            checkpoint=c.checkpoint,
            decisions=c.decisions,
            approved=c.approved,
            changes_requested=c.changes_requested,
            cancelled=c.cancelled,
            approval_rate=round(c.approval_rate, 4),
        )
        for c in store.checkpoint_stats(workflow, window)
    ]
    weak = [
        WeakSpot(
            kind="failure_prone_task",
            workflow=t.workflow,
            subject=t.task_id,
            rate=t.failure_rate,
            detail=f"{s.agent}: {s.failed_attempts} of {s.attempts} attempts failed;"
            f" gets {learning.extra_retries} extra retries",
        )
        for s, t in zip(stats, tasks, strict=True)
        if failure_prone(s, learning)
    ]
    weak += [
        WeakSpot(
            kind="often_sent_back",
            workflow=c.workflow,
            subject=c.checkpoint,
            rate=c.approval_rate,
            detail=f"approved {c.approved} of {c.decisions} times;"
            f" changes requested {c.changes_requested} times",
        )
        for c in checkpoints
        if c.decisions >= learning.min_runs and c.approval_rate < 0.5
    ]
    return Insights(
        workflow=workflow,
        min_runs=learning.min_runs,
        failure_rate_threshold=learning.failure_rate,
        extra_retries=learning.extra_retries,
        workflows=[
            WorkflowInsight(
                workflow=w.workflow,
                executions=w.executions,
                completed=w.completed,
                failed=w.failed,
                cancelled=w.cancelled,
                success_rate=round(w.success_rate, 4),
            )
            for w in store.workflow_stats(workflow, window)
        ],
        tasks=tasks,
        checkpoints=checkpoints,
        change_requests=[
            ChangeRequestInsight(
                workflow=c.workflow, checkpoint=c.checkpoint, feedback=c.feedback, count=c.count
            )
            for c in store.change_requests(workflow, window=window)
        ],
        weak_spots=weak,
    )


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
