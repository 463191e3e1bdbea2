"""Planner: intents, stage cutting at checkpoints, and plan validation."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import field_validator

from connectsw import hookimpl
from connectsw.agents.base import Agent, AgentInput, AgentOutput, TaskContext
from connectsw.core.errors import PlanError, PluginError
from connectsw.core.models import CheckpointSpec, Plan, Request, RequestContext, TaskSpec
from connectsw.core.planner import (
    CheckpointAt,
    Planner,
    build_plan,
    parse_intent,
    slugify,
    validate_plan,
)
from connectsw.plugins.manager import get_plugin_manager
from connectsw.plugins.registry import get_registries, reset_registries

README_EXAMPLE = """\
name: release-notes
tasks:
  - id: collect
    agent: shell
    with: {command: "git log --oneline > CHANGES.txt"}
  - id: write
    agent: product-manager
    needs: [collect]
    retries: 2
    timeout: 300
checkpoints:
  - after: [collect]
    question: "Changes collected. Proceed?"
"""


def plan_file(tmp_path: Path, text: str, name: str = "graph.yaml") -> Plan:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return Planner().plan(Request(command="run", args=[str(path)]))[1]


def plan_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PlanError) as info:
        plan_file(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "graph.yaml") in message  # names the file
    return message


# -- refused graphs --------------------------------------------------------------


def test_cycle_refused_naming_its_tasks(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path,
        """
name: loop
tasks:
  - {id: start, agent: noop}
  - {id: a, agent: noop, needs: [start, c]}
  - {id: b, agent: noop, needs: [a]}
  - {id: c, agent: noop, needs: [b]}
""",
    )
    assert "cycle" in message
    cycle = message.split("cycle (task -> a task it needs): ")[1].split(" -> ")
    assert set(cycle) == {"a", "b", "c"}
    assert cycle[0] == cycle[-1]
    assert "start" not in cycle


def test_self_dependency_refused(tmp_path: Path) -> None:
    message = plan_error(tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop, needs: [a]}\n")
    assert "'a' needs itself" in message


def test_unknown_agent_refused_listing_known(tmp_path: Path) -> None:
    message = plan_error(tmp_path, "name: x\ntasks:\n  - {id: a, agent: wizard}\n")
    assert "task 'a': unknown agent 'wizard'" in message
    known = message.split("(known: ")[1].rstrip(")").split(", ")
    assert {"shell", "noop", "product-manager", "architect"} <= set(known)
    assert known == sorted(known)


def test_missing_dependency_refused(tmp_path: Path) -> None:
    message = plan_error(tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop, needs: [nope]}\n")
    assert "task 'a' needs unknown task 'nope'" in message


def test_duplicate_id_refused(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop}\n  - {id: a, agent: shell}\n"
    )
    assert "task id 'a' is used twice" in message


def test_checkpoint_after_unknown_task(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path,
        "name: x\ntasks:\n  - {id: a, agent: noop}\n"
        "checkpoints:\n  - {after: [ghost], question: 'ok?'}\n",
    )
    assert "checkpoint 1 waits for unknown task 'ghost'" in message


def test_checkpoint_adding_no_new_task(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path,
        """
name: x
tasks:
  - {id: a, agent: noop}
  - {id: b, agent: noop, needs: [a]}
checkpoints:
  - {after: [b], question: "first?"}
  - {after: [a], question: "again?"}
""",
    )
    assert "checkpoint 2 adds no task" in message


def test_shell_task_with_unknown_with_key(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path,
        "name: x\ntasks:\n  - id: a\n    agent: shell\n    with: {command: 'true', colour: red}\n",
    )
    assert "task 'a' (shell): with.colour: unknown key" in message


class CountInput(AgentInput):
    count: int
    ratio: float = 1.0


class CountAgent(Agent):
    name = "count"
    input_model = CountInput

    def run(self, ctx: TaskContext) -> AgentOutput:
        return AgentOutput()


class ExitingInput(AgentInput):
    count: int

    @field_validator("count")
    @classmethod
    def _exits(cls, count: int) -> int:
        if count == 0:
            sys.exit(0)
        return count


class ExitingAgent(CountAgent):
    name = "exiting"
    input_model = ExitingInput


@pytest.fixture
def count_agent() -> Iterator[None]:
    """A plugin agent whose input has numbers (registered for the test)."""
    plugin = types.ModuleType("connectsw_test_count")

    @hookimpl
    def register_agents(register: Callable[[Any], None]) -> None:
        register(CountAgent())
        register(ExitingAgent())

    plugin.register_agents = register_agents  # type: ignore[attr-defined]
    pm = get_plugin_manager()
    pm.register(plugin, name="test-count")
    reset_registries()
    yield
    pm.unregister(name="test-count")
    reset_registries()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5_0", "with.count: Input should be a valid integer"),  # YAML 1.2: the string "5_0"
        ('"5"', "with.count: Input should be a valid integer"),  # a quoted number
        ("3.0", "with.count: Input should be a valid integer"),  # a float, not an integer
        ("true", "with.count: Input should be a valid integer"),
    ],
)
def test_an_agents_input_is_read_strictly(
    tmp_path: Path, count_agent: None, value: str, expected: str
) -> None:
    """Trial 5 item 12: `5_0` (a string in YAML 1.2) became 50 and `3.0` became 3 in a
    plugin agent's input, as its model converted them: the `with` block is JSON data,
    validated as JSON (strict), like the graph's own fields."""
    message = plan_error(
        tmp_path, f"name: x\ntasks:\n  - id: a\n    agent: count\n    with: {{count: {value}}}\n"
    )
    assert f"task 'a' (count): {expected}" in message
    plan = plan_file(
        tmp_path, "name: x\ntasks:\n  - {id: a, agent: count, with: {count: 3, ratio: 2}}\n"
    )
    assert plan.task("a").with_ == {"count": 3, "ratio": 2}  # an integer is a fine float


def test_an_input_model_that_exits_is_its_plugins_failure(
    tmp_path: Path, count_agent: None
) -> None:
    """Trial 7, F11: a validator calling sys.exit(0) ended `run` with exit 0 and nothing
    stored; it is the plugin's failure (exit 3)."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: x\ntasks:\n  - {id: a, agent: exiting, with: {count: 0}}\n")
    with pytest.raises(PluginError, match=r'agent "exiting" input_model raised SystemExit: 0'):
        Planner().plan(Request(command="run", args=[str(graph)]))


def test_shell_task_missing_command(tmp_path: Path) -> None:
    message = plan_error(tmp_path, "name: x\ntasks:\n  - {id: a, agent: shell}\n")
    assert "task 'a' (shell): with.command: Field required" in message


def test_unknown_gate_rule(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop}\ngates: [no-such-rule]\n"
    )
    assert "unknown gate rule 'no-such-rule'" in message
    assert "tests-pass" in message  # lists the known ones


def test_unknown_gate_rule_on_checkpoint(tmp_path: Path) -> None:
    message = plan_error(
        tmp_path,
        "name: x\ntasks:\n  - {id: a, agent: noop}\n"
        "checkpoints:\n  - {after: [a], question: 'ok?', name: done, gates: [lint]}\n",
    )
    assert "stage 'done': unknown gate rule 'lint'" in message


def test_invalid_file_is_plan_error(tmp_path: Path) -> None:
    message = plan_error(tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop, colour: red}\n")
    assert "colour: unknown key" in message


# -- stage cutting ---------------------------------------------------------------


def test_readme_example_stages(tmp_path: Path) -> None:
    plan = plan_file(tmp_path, README_EXAMPLE)
    assert plan.name == "release-notes"
    assert plan.workflow == "task-graph"
    assert [s.task_ids for s in plan.stages] == [["collect"], ["write"]]
    first, last = plan.stages
    assert first.checkpoint is not None
    assert first.checkpoint.question == "Changes collected. Proceed?"
    assert first.checkpoint.type == "checkpoint_1"
    assert last.checkpoint is None
    assert last.name == "final"
    assert plan.task("collect").stage == 0
    assert plan.task("write").stage == 1
    assert plan.task("write").retries == 2
    assert plan.task("write").timeout == 300
    assert plan.task("collect").title == ""


def test_relative_file_resolved_in_request_working_directory(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "g.yaml").write_text(README_EXAMPLE, encoding="utf-8")
    request = Request(
        command="run",
        args=["g.yaml"],
        context=RequestContext(working_directory=str(tmp_path / "project")),
    )
    intent, plan = Planner().plan(request)
    assert intent.source_file == "g.yaml"
    assert plan.name == "release-notes"


def test_checkpoint_takes_everything_its_tasks_need(tmp_path: Path) -> None:
    plan = plan_file(
        tmp_path,
        """
name: chain
tasks:
  - {id: a, agent: noop}
  - {id: b, agent: noop, needs: [a]}
  - {id: c, agent: noop, needs: [b]}
checkpoints:
  - {after: [b], question: "halfway?", name: halfway}
""",
    )
    assert [s.task_ids for s in plan.stages] == [["a", "b"], ["c"]]
    assert plan.checkpoints[0].type == "halfway"
    assert [t.stage for t in plan.tasks] == [0, 0, 1]


def test_last_checkpoint_covering_all_tasks_leaves_no_empty_stage(tmp_path: Path) -> None:
    plan = plan_file(
        tmp_path,
        """
name: chain
tasks:
  - {id: a, agent: noop}
  - {id: b, agent: noop, needs: [a]}
checkpoints:
  - {after: [a], question: "one?"}
  - {after: [b], question: "two?"}
gates: [tests-pass]
""",
    )
    assert [s.task_ids for s in plan.stages] == [["a"], ["b"]]
    assert [c.type for c in plan.checkpoints] == ["checkpoint_1", "checkpoint_2"]
    assert plan.stages[-1].gates == ["tests-pass"]  # final gates join the last stage


def test_plan_order_respects_needs() -> None:
    tasks = [
        TaskSpec(id="c", agent="noop", needs=["b"]),
        TaskSpec(id="b", agent="noop", needs=["a"]),
        TaskSpec(id="a", agent="noop"),
    ]
    plan = build_plan("x", "test", tasks)
    assert plan.stages[0].task_ids == ["a", "b", "c"]
    assert [t.id for t in plan.tasks] == ["c", "b", "a"]  # task list order is kept
    validate_plan(plan, get_registries())


def test_validate_plan_refuses_inconsistent_stages() -> None:
    plan = build_plan(
        "x",
        "test",
        [TaskSpec(id="a", agent="noop"), TaskSpec(id="b", agent="noop", needs=["a"])],
        [CheckpointAt(after=["a"], checkpoint=CheckpointSpec(type="t", question="q"))],
    )
    broken = plan.model_copy(deep=True)
    broken.tasks[0].stage = 1  # 'a' claims stage 1 but is listed in stage 0
    with pytest.raises(PlanError, match="not in exactly its stage"):
        validate_plan(broken, get_registries())
    broken = plan.model_copy(deep=True)
    broken.stages = [broken.stages[1], broken.stages[0]]
    broken.stages[0].index, broken.stages[1].index = 0, 1
    for t in broken.tasks:
        t.stage = 1 - t.stage
    with pytest.raises(PlanError, match="runs before task 'a'"):
        validate_plan(broken, get_registries())


# -- built-in workflows ----------------------------------------------------------


def test_new_product_plan() -> None:
    intent, plan = Planner().plan(Request(command="new product", args=["AI-powered code reviewer"]))
    assert intent.kind == "new_product"
    assert plan.workflow == "new-product"
    assert plan.name == "ai-powered-code-reviewer"
    assert [c.type for c in plan.checkpoints] == [
        "prd_complete",
        "architecture_complete",
        "implementation_complete",
    ]
    assert len(plan.stages) == 3  # nothing after the last checkpoint
    assert [s.task_ids for s in plan.stages[:2]] == [["prd"], ["architecture"]]
    assert set(plan.stages[2].task_ids) == {"backend", "frontend", "qa"}
    assert plan.stages[2].task_ids[-1] == "qa"
    backend, frontend, qa = plan.task("backend"), plan.task("frontend"), plan.task("qa")
    assert backend.needs == ["architecture"]  # backend ∥ frontend
    assert frontend.needs == ["architecture"]
    assert set(qa.needs) == {"backend", "frontend"}
    assert plan.stages[2].gates == ["tests-pass"]
    assert plan.stages[0].gates == [] and plan.stages[1].gates == []
    assert plan.task("prd").agent == "product-manager"
    assert plan.task("architecture").agent == "architect"


@pytest.mark.parametrize(
    ("command", "workflow", "name", "checkpoints"),
    [
        ("new feature", "new-feature", "feature-dark-mode", ["spec_complete", "feature_complete"]),
        ("fix", "fix-bug", "fix-dark-mode", ["fix_complete"]),
        ("fix bug", "fix-bug", "fix-dark-mode", ["fix_complete"]),
        ("  Fix   Bug ", "fix-bug", "fix-dark-mode", ["fix_complete"]),
    ],
)
def test_feature_and_fix_plans_validate(
    command: str, workflow: str, name: str, checkpoints: list[str]
) -> None:
    registries = get_registries()
    _, plan = Planner(registries).plan(Request(command=command, args=["Dark", "mode"]))
    assert plan.workflow == workflow
    assert plan.name == name
    assert [c.type for c in plan.checkpoints] == checkpoints
    assert plan.stages[-1].gates == ["tests-pass"]
    assert validate_plan(plan, registries) is plan


def test_unknown_command_refused() -> None:
    with pytest.raises(PlanError) as info:
        Planner().plan(Request(command="deploy", args=["it"]))
    assert "unknown command 'deploy'" in str(info.value)
    assert "new product" in str(info.value)


@pytest.mark.parametrize("args", [[], ["   "], ["", ""]])
def test_empty_description_refused(args: list[str]) -> None:
    with pytest.raises(PlanError, match="needs a description"):
        parse_intent(Request(command="new product", args=args))


def test_run_without_file_refused() -> None:
    with pytest.raises(PlanError, match="needs a description"):
        Planner().plan(Request(command="run"))


def test_slugify() -> None:
    assert slugify("AI-powered code reviewer") == "ai-powered-code-reviewer"
    assert slugify("!!!") == "project"
    assert len(slugify("word " * 40)) <= 48
    assert not slugify("word " * 40).endswith("-")


# -- plugin code that blocks (trial 8b, F3) -----------------------------------------------


class SleepyWorkflow:
    """A plugin workflow whose claims() or decompose() blocks far past the bound."""

    name = "sleepy"
    kind = "sleepy"
    commands = ("sleepy",)
    description = "blocks"
    where = "claims"

    def claims(self, intent: Any) -> bool:
        if self.where == "claims":
            time.sleep(30)
        return intent.kind == "sleepy"

    def decompose(self, intent: Any, **options: Any) -> Plan:
        time.sleep(30)
        raise AssertionError("unreachable")


class SleepyInput(AgentInput):
    count: int = 0

    @field_validator("count")
    @classmethod
    def slow(cls, value: int) -> int:
        time.sleep(30)
        return value


class SleepyAgent(CountAgent):
    name = "sleepy-agent"
    input_model = SleepyInput


@pytest.fixture
def sleepy(monkeypatch: pytest.MonkeyPatch) -> Iterator[SleepyWorkflow]:
    monkeypatch.setenv("CONNECTSW_PLUGIN_IMPORT_TIMEOUT", "0.5")
    workflow = SleepyWorkflow()
    plugin = types.ModuleType("connectsw_test_sleepy")

    @hookimpl
    def register_workflows(register: Callable[[Any], None]) -> None:
        register(workflow)

    @hookimpl
    def register_agents(register: Callable[[Any], None]) -> None:
        register(SleepyAgent())

    plugin.register_workflows = register_workflows  # type: ignore[attr-defined]
    plugin.register_agents = register_agents  # type: ignore[attr-defined]
    pm = get_plugin_manager()
    pm.register(plugin, name="test-sleepy")
    reset_registries()
    yield workflow
    pm.unregister(name="test-sleepy")
    reset_registries()


def test_a_workflow_whose_claims_blocks_is_skipped_with_a_warning(
    tmp_path: Path, sleepy: SleepyWorkflow, caplog: pytest.LogCaptureFixture
) -> None:
    """Trial 8b, F3: a plugin's claims() that blocked hung every `run` and `new` for
    ever, with no output. Past the bound it is skipped, naming the plugin."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: x\ntasks:\n  - {id: a, agent: shell, with: {command: 'true'}}\n")
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="connectsw.planner"):
        _intent, plan = Planner().plan(Request(command="run", args=[str(graph)]))
    assert time.monotonic() - started < 5
    assert plan.workflow == "task-graph"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert 'plugin "test-sleepy"' in warning
    assert 'workflow "sleepy" claims did not return within 0.5 s' in warning


def test_a_workflow_whose_decompose_blocks_fails_the_plan(sleepy: SleepyWorkflow) -> None:
    sleepy.where = "decompose"
    started = time.monotonic()
    with pytest.raises(PluginError) as info:
        Planner().plan(Request(command="sleepy", args=["x"]))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message
    assert 'plugin "test-sleepy" failed: workflow "sleepy" decompose did not return' in message


def test_an_input_model_that_blocks_fails_the_plan(tmp_path: Path, sleepy: SleepyWorkflow) -> None:
    sleepy.where = "nowhere"
    graph = tmp_path / "g.yaml"
    graph.write_text("name: x\ntasks:\n  - {id: a, agent: sleepy-agent, with: {count: 1}}\n")
    started = time.monotonic()
    with pytest.raises(PluginError) as info:
        Planner().plan(Request(command="run", args=[str(graph)]))
    assert time.monotonic() - started < 5
    assert 'agent "sleepy-agent" input_model did not return within 0.5 s' in str(info.value)


def test_a_workflow_whose_code_calls_os_exit_is_its_plugins_failure(
    tmp_path: Path, sleepy: SleepyWorkflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial 8, F4: os._exit(0) in a plugin workflow's claims or decompose ended
    `new product --yes` with exit 0, no output and no execution."""
    import os

    sleepy.where = "nowhere"  # claims answers at once
    monkeypatch.setattr(sleepy, "decompose", lambda intent, **options: os._exit(0))
    with pytest.raises(PluginError) as info:
        Planner().plan(Request(command="sleepy", args=["x"]))
    assert 'plugin "test-sleepy" failed: workflow "sleepy" decompose' in str(info.value)
    monkeypatch.setattr(sleepy, "claims", lambda intent: os._exit(0))
    graph = tmp_path / "g.yaml"
    graph.write_text("name: x\ntasks:\n  - {id: a, agent: shell, with: {command: 'true'}}\n")
    _intent, plan = Planner().plan(Request(command="run", args=[str(graph)]))
    assert plan.workflow == "task-graph"  # the workflow that exited is skipped
