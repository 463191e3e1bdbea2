"""The learning engine changes plans: estimates, extra retries, the project's preferences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectsw.core.engine import Engine
from connectsw.core.learning import critical_path, human_duration, insights
from connectsw.core.memory import open_memory
from connectsw.core.memory_auto import project_key
from connectsw.core.models import (
    Decision,
    Execution,
    ExecutionStatus,
    Plan,
    Request,
    Stage,
    TaskSpec,
    TaskStatus,
)
from tests.core.history import attempt, past_execution

# Every test with an engine runs on the embedded store and on a real PostgreSQL.
pytestmark = pytest.mark.both_stores


def learning(engine: Engine, **values: Any) -> None:
    """Change the engine's ``[learning]`` settings."""
    s = engine.settings
    engine.settings = s.model_copy(update={"learning": s.learning.model_copy(update=values)})


def nap_graph(seconds: float) -> dict[str, Any]:
    nap = {"id": "nap", "agent": "sleep", "with": {"seconds": seconds}}
    return {"name": "naps", "tasks": [nap]}


def ran_seconds(engine: Engine, execution: Execution) -> float:
    """How long the execution's ``nap`` ran, as recorded (the history the estimate reads)."""
    (result,) = engine.store.task_results(execution.id)
    assert result.status is TaskStatus.SUCCEEDED and result.finished_at and result.started_at
    return (result.finished_at - result.started_at).total_seconds()


def test_the_estimate_moves_with_history(
    engine: Engine, submit_graph: Callable[..., Execution]
) -> None:
    # The estimates are compared with the durations recorded, not with the clock: a
    # loaded machine makes a 0.1 s nap take longer (CI saw 0.73 s), never shorter.
    learning(engine, min_runs=1, default_task_seconds=60.0)
    first = submit_graph(nap_graph(0.1))
    nap = first.plan.task("nap").learned
    assert nap is not None and (nap.basis, nap.estimated_seconds, nap.runs) == ("default", 60, 0)
    assert first.plan.estimated_seconds == 60 and first.plan.estimated_duration == "about 60 s"
    assert engine.run(first.id).status is ExecutionStatus.COMPLETED
    ran = [ran_seconds(engine, first)]
    assert ran[0] >= 0.1

    after_short = submit_graph(nap_graph(0.8))
    nap = after_short.plan.task("nap").learned
    assert nap is not None and (nap.basis, nap.runs) == ("history", 1)
    assert nap.estimated_seconds == nap.p90_seconds == round(ran[0], 3)
    assert after_short.plan.estimated_seconds == nap.estimated_seconds
    assert after_short.plan.estimated_duration == human_duration(ran[0], ran[0])
    for _ in range(3):  # three slow runs beside one fast: the median is a slow one
        assert engine.run(after_short.id).status is ExecutionStatus.COMPLETED
        ran.append(ran_seconds(engine, after_short))
        after_short = submit_graph(nap_graph(0.8))

    later = after_short.plan.task("nap").learned
    assert later is not None and (later.basis, later.runs) == ("history", 4)
    # Nearest rank (core/stores/learning.py): p50 is the 2nd of 4, p90 the 4th.
    assert later.estimated_seconds == round(sorted(ran)[1], 3) >= 0.8
    assert later.p90_seconds == round(max(ran), 3) >= later.estimated_seconds


def test_the_estimate_reads_the_latest_executions_of_the_workflow(
    engine: Engine, submit_graph: Callable[..., Execution]
) -> None:
    learning(engine, min_runs=2, window=3)
    plan = submit_graph(nap_graph(0.1)).plan
    for seconds in (100.0, 100.0, 100.0, 2.0, 2.0):  # three slow runs, then two fast ones
        ex = past_execution(engine.store, plan)
        engine.store.save_task_results([attempt(ex, "nap", seconds)])

    latest = submit_graph(nap_graph(0.1)).plan.task("nap").learned
    assert latest is not None and (latest.runs, latest.estimated_seconds) == (3, 2.0)
    learning(engine, window=0)  # the whole history: the slow runs are most
    every = submit_graph(nap_graph(0.1)).plan.task("nap").learned
    assert every is not None and (every.runs, every.estimated_seconds) == (5, 100.0)


def record(engine: Engine, plan: Plan, task: str, outcomes: list[TaskStatus]) -> None:
    """A finished execution of ``plan`` whose ``task`` had these attempts (1 s each)."""
    ex = past_execution(engine.store, plan, ExecutionStatus.FAILED)
    engine.store.save_task_results(
        [attempt(ex, task, 1.0, status, attempt=n) for n, status in enumerate(outcomes, 1)]
    )


def test_failure_prone_tasks_get_extra_retries(
    engine: Engine, submit_graph: Callable[..., Execution]
) -> None:
    graph = {
        "name": "flaky",
        "tasks": [
            {"id": "flaky", "agent": "flaky", "retries": 1},
            {"id": "fragile", "agent": "flaky"},
            {"id": "greedy", "agent": "flaky", "retries": 20},
            {"id": "steady", "agent": "sleep", "retries": 2},
        ],
    }
    learning(engine, min_runs=2, failure_rate=0.3, extra_retries=2)
    plan = submit_graph(graph).plan
    assert [t.retries for t in plan.tasks] == [1, None, 20, 2]  # no history yet
    F, S = TaskStatus.FAILED, TaskStatus.SUCCEEDED
    for _ in range(2):
        record(engine, plan, "flaky", [F, S])  # half its attempts fail
        record(engine, plan, "fragile", [F])
        record(engine, plan, "greedy", [F, S])
        record(engine, plan, "steady", [S])
    record(engine, plan, "steady", [F])
    record(engine, plan, "steady", [S])  # 1 of 4 attempts failed (0.25 < 0.3): not prone

    learned = submit_graph(graph).plan
    by_id = {t.id: t for t in learned.tasks}
    assert by_id["flaky"].retries == 1  # the author's own: kept
    assert by_id["fragile"].retries == 2  # left to the engine: default_retries (0) + 2
    assert by_id["greedy"].retries == 20
    assert by_id["steady"].retries == 2
    flaky = by_id["flaky"].learned
    assert flaky is not None and (flaky.extra_retries, flaky.failure_rate) == (0, 0.5)
    fragile = by_id["fragile"].learned
    assert fragile is not None and (fragile.extra_retries, fragile.failure_rate) == (2, 1.0)
    learning(engine, extra_retries=10)
    engine.settings = engine.settings.model_copy(
        update={"engine": engine.settings.engine.model_copy(update={"default_retries": 15})}
    )
    capped = submit_graph(graph).plan.task("fragile")
    assert capped.retries == 20 and capped.learned is not None  # never above 20
    assert capped.learned.extra_retries == 5
    learning(engine, extra_retries=2)
    steady = by_id["steady"].learned
    assert steady is not None and (steady.extra_retries, steady.failure_rate) == (0, 0.25)
    greedy = by_id["greedy"].learned
    assert greedy is not None and greedy.extra_retries == 0

    # The same history through `insights`: weak spots name the failure-prone tasks.
    report = insights(engine.store, engine.settings, "task-graph")
    weak = {w.subject for w in report.weak_spots if w.kind == "failure_prone_task"}
    assert weak == {"flaky", "fragile", "greedy"}

    learning(engine, enabled=False)
    assert [t.retries for t in submit_graph(graph).plan.tasks] == [1, None, 20, 2]


def test_an_authors_retries_and_another_graphs_history_are_left_alone(
    engine: Engine, submit_graph: Callable[..., Execution], tmp_path: Path
) -> None:
    """Trial 5 item 10: `retries: 0` on non-idempotent work ran twice, because failing tasks
    of the same id and agent in unrelated graphs made it "failure-prone"."""
    learning(engine, min_runs=2, failure_rate=0.3, extra_retries=2)
    fails: dict[str, Any] = {"id": "a", "agent": "shell", "with": {"command": "exit 1"}}
    nightly = {"name": "nightly-sync", "tasks": [fails]}
    plan = submit_graph(nightly).plan
    for _ in range(3):
        record(engine, plan, "a", [TaskStatus.FAILED])
    # Its own graph's history: retries left to the engine get the extra ones.
    again = submit_graph(nightly).plan.task("a")
    assert again.retries == 2 and again.learned is not None
    assert (again.learned.runs, again.learned.extra_retries) == (3, 2)

    log = tmp_path / "charges.log"
    command = f"echo charged-card >> {log}; exit 1"
    charge = {"id": "a", "agent": "shell", "retries": 0, "with": {"command": command}}
    payment = submit_graph({"name": "unrelated-payment", "tasks": [charge]})
    task = payment.plan.task("a")
    assert task.retries == 0 and task.learned is not None
    assert (task.learned.runs, task.learned.extra_retries) == (0, 0)  # not nightly-sync's
    assert engine.run(payment.id).status is ExecutionStatus.FAILED
    assert log.read_text() == "charged-card\n"  # once: the author said no retry

    # The same graph, its author now saying `retries: 0`: the history informs, never overrides.
    fails["retries"] = 0
    kept = submit_graph(nightly).plan.task("a")
    assert kept.retries == 0 and kept.learned is not None
    assert (kept.learned.failure_rate, kept.learned.extra_retries) == (1.0, 0)


def test_a_change_request_is_applied_up_front_in_the_next_plan_of_the_project(
    engine: Engine, tmp_path: Path
) -> None:
    def submit(title: str, ws: str) -> Execution:
        return engine.submit(Request(command="new product", args=[title]), tmp_path / ws)

    first = submit("Recipe planner", "ws1")
    assert first.plan.task("prd").learned is not None
    assert first.plan.task("prd").learned.preferences == []  # type: ignore[union-attr]
    engine.run(first.id)
    prd1 = (tmp_path / "ws1" / "docs" / "PRD.md").read_text()
    assert "## Security" not in prd1
    engine.decide(first.id, Decision.REQUEST_CHANGES, "Add a Security section")

    second = submit("Recipe planner", "ws2")
    prd_task = second.plan.task("prd").learned
    assert prd_task is not None and prd_task.preferences == ["Add a Security section"]
    assert second.plan.task("architecture").learned.preferences == []  # type: ignore[union-attr]
    assert engine.run(second.id).status is ExecutionStatus.AWAITING_CHECKPOINT
    assert engine.get(second.id).round == 0  # the first PRD of this execution...
    prd2 = (tmp_path / "ws2" / "docs" / "PRD.md").read_text()
    assert "\n## Security\n" in prd2  # ...has the section asked for last time
    assert "## Project preferences applied" in prd2 and "Add a Security section" in prd2

    # A note given with an approval is passed on in its execution, not a change request.
    engine.decide(second.id, Decision.APPROVE, "Looks good, proceed")
    third = submit("Recipe planner", "ws5").plan.task("prd").learned
    assert third is not None and third.preferences == ["Add a Security section"]

    other = submit("Team chat", "ws3")  # another project: nothing of Recipe planner's
    assert other.plan.task("prd").learned.preferences == []  # type: ignore[union-attr]
    engine.run(other.id)
    assert "## Security" not in (tmp_path / "ws3" / "docs" / "PRD.md").read_text()

    # A preference forgotten (GDPR, or changed mind) is no longer applied.
    memory = open_memory(engine.settings)
    for record in memory.records(project_key(first)):
        if record.type == "preference":
            memory.forget(record.id)
    again = submit("Recipe planner", "ws4")
    assert again.plan.task("prd").learned.preferences == []  # type: ignore[union-attr]


def test_critical_path_and_human_durations() -> None:
    tasks = [  # b is listed before the task it needs: the order must not matter
        TaskSpec(id="b", agent="x", needs=["a"]),
        TaskSpec(id="a", agent="x"),
        TaskSpec(id="c", agent="x"),
        TaskSpec(id="d", agent="x", needs=["b", "c"], stage=1),
    ]
    plan = Plan(
        name="p",
        workflow="w",
        tasks=tasks,
        stages=[
            Stage(index=0, name="one", task_ids=["b", "a", "c"]),
            Stage(index=1, name="two", task_ids=["d"]),
        ],
    )
    # Stage one: a then b (3 + 4 s) beside c (5 s): 7 s; stage two: 2 s.
    assert critical_path(plan, {"a": 3, "b": 4, "c": 5, "d": 2}) == 9
    assert human_duration(40, 40) == "about 40 s"
    assert human_duration(100, 230) == "2-4 min"
    assert human_duration(3 * 3600, 5 * 3600) == "3-5 h"
    assert human_duration(2 * 86400, 2.5 * 86400) == "2-3 days"


def test_a_workflows_own_retries_are_raised_but_a_task_graphs_are_kept() -> None:
    """Built-in workflows ask for 1 retry in code: a default learning may raise. A
    ``retries:`` a person wrote in a task-graph file (0 included) is kept."""
    from connectsw.conf.settings import load_settings
    from connectsw.core.learning import task_learning
    from connectsw.core.models import TaskSpec
    from connectsw.core.stores.learning import TaskStats

    settings = load_settings(learning={"min_runs": 2, "failure_rate": 0.3, "extra_retries": 2})
    prone = TaskStats("new-product", "prd", "product-manager", 4, 2, 8, 5, 1.0, 2.0)
    task = TaskSpec(id="prd", agent="product-manager", retries=1)
    learned, retries = task_learning(task, prone, settings, [])
    assert (retries, learned.extra_retries) == (3, 2)
    for written in (0, 1):
        kept = TaskSpec(id="a", agent="shell", retries=written)
        learned, retries = task_learning(kept, prone, settings, [], authored=True)
        assert (retries, learned.extra_retries) == (None, 0)
