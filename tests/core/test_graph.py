"""A stage's Dask graph: keys, dependencies, results known from earlier passes."""

from __future__ import annotations

from dask.utils import key_split

from connectsw.core.graph import KEY_PREFIX, stage_graph
from connectsw.core.models import Plan, Stage, TaskSpec
from connectsw.core.runner import Known, TaskCall


def plan() -> Plan:
    tasks = [
        TaskSpec(id="a", agent="noop"),
        TaskSpec(id="b", agent="noop", needs=["a"]),
        TaskSpec(id="c", agent="noop", needs=["a", "b"]),
    ]
    return Plan(
        name="p",
        workflow="task-graph",
        tasks=tasks,
        stages=[Stage(index=0, name="s", task_ids=["a", "b", "c"])],
    )


def calls(*ids: str) -> dict[str, TaskCall]:
    return {t: TaskCall("sqlite:///x.db", "exec_1", 0, t, 1) for t in ids}


def test_one_key_prefix_for_every_task() -> None:
    dsk, keys = stage_graph(plan(), 0, calls("a", "b", "c"), {}, "1.1")
    assert {key_split(k) for k in keys} == {KEY_PREFIX}
    assert set(dsk) == set(keys)


def test_dependencies_in_the_graph_are_keys_of_the_same_submission() -> None:
    dsk, keys = stage_graph(plan(), 0, calls("a", "b", "c"), {}, "1.1")
    by_task = {k[-1]: k for k in keys}
    call, *deps = dsk[by_task["c"]]
    assert isinstance(call, TaskCall) and call.task_id == "c"
    assert deps == [by_task["a"], by_task["b"]]


def test_finished_dependencies_enter_as_known_results() -> None:
    done = {"status": "succeeded", "summary": "", "outputs": {"n": 1}, "artifacts": []}
    dsk, keys = stage_graph(plan(), 0, calls("b", "c"), {"a": done}, "1.2")
    assert [k[-1] for k in keys] == ["b", "c"]
    _, dep = dsk[keys[0]]
    assert dep == Known(done)


def test_each_submission_has_keys_of_its_own() -> None:
    # A key submitted again while the scheduler still holds the old one would get
    # the old task's state (e.g. its dead worker's error), not a new run.
    _, first = stage_graph(plan(), 0, calls("a", "b", "c"), {}, "1.1")
    _, again = stage_graph(plan(), 0, calls("a", "b", "c"), {}, "1.2")
    _, other_owner = stage_graph(plan(), 0, calls("a", "b", "c"), {}, "2.1")
    assert not set(first) & set(again)
    assert not set(first) & set(other_owner)
