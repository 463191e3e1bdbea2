"""connectsw.testing: the fixtures plugin authors' tests use (loaded through pytest11)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectsw import (
    Agent,
    AgentInput,
    AgentOutput,
    CheckpointAt,
    CheckpointSpec,
    GateContext,
    GateRule,
    PlanError,
    RuleResult,
    TaskContext,
    TaskError,
    TaskSpec,
    build_plan,
    hookimpl,
)
from connectsw.testing import AgentRun, EventLog, GraphRun


class GreetInput(AgentInput):
    name: str = "world"


class GreetAgent(Agent):
    name = "greet"
    description = "Writes greeting.txt."
    input_model = GreetInput
    isolation = "thread"

    def run(self, ctx: TaskContext) -> AgentOutput:
        params = GreetInput.model_validate(ctx.inputs)
        if params.name == "nobody":
            raise TaskError("nobody to greet")
        artifact = ctx.write("greeting.txt", f"hello {params.name}\n")
        return AgentOutput(summary="greeted", outputs={"name": params.name}, artifacts=[artifact])


class HasReadme(GateRule):
    name = "has-readme"
    description = "The workspace has a README.md."

    def evaluate(self, ctx: GateContext) -> RuleResult:
        if (ctx.workspace / "README.md").is_file():
            return self.passed("README.md found")
        return self.failed("no README.md", "write a README.md")


class Crashes(GateRule):
    name = "crashes"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        raise KeyError("missing")


def greet_plugin() -> types.ModuleType:
    plugin = types.ModuleType("connectsw_test_greet")

    @hookimpl
    def register_agents(register: Callable[[Any], None]) -> None:
        register(GreetAgent())

    @hookimpl
    def register_gates(register: Callable[[Any], None]) -> None:
        register(HasReadme())

    plugin.register_agents = register_agents  # type: ignore[attr-defined]
    plugin.register_gates = register_gates  # type: ignore[attr-defined]
    return plugin


# -- run_agent -----------------------------------------------------------------------


def test_run_agent_returns_output_and_workspace(run_agent: Callable[..., AgentRun]) -> None:
    run = run_agent(GreetAgent(), {"name": "Ada"})
    assert run.summary == "greeted"
    assert run.outputs == {"name": "Ada"}
    assert [a.path for a in run.artifacts] == ["greeting.txt"]
    assert run.read("greeting.txt") == "hello Ada\n"


def test_run_agent_validates_inputs_and_propagates_task_errors(
    run_agent: Callable[..., AgentRun],
) -> None:
    with pytest.raises(PlanError, match=r"with\.nme"):
        run_agent(GreetAgent(), {"nme": "Ada"})
    with pytest.raises(TaskError, match="nobody to greet"):
        run_agent(GreetAgent(), {"name": "nobody"})


def test_run_agent_by_registered_name(run_agent: Callable[..., AgentRun]) -> None:
    run = run_agent("noop", files={"a.txt": "x"})
    assert (run.workspace / "a.txt").read_text() == "x"
    with pytest.raises(LookupError, match="no agent 'nope'"):
        run_agent("nope")


# -- run_graph -------------------------------------------------------------------------


def test_run_graph_runs_on_the_engine(
    run_graph: Callable[..., GraphRun], recorded_events: EventLog
) -> None:
    graph = {
        "name": "greetings",
        "tasks": [
            {"id": "one", "agent": "greet", "with": {"name": "Ada"}},
            {"id": "two", "agent": "noop", "needs": ["one"]},
        ],
        "checkpoints": [{"after": ["one"], "question": "Go on?"}],
    }
    run = run_graph(graph, plugins=[greet_plugin()])
    assert run.status == "completed", run.error
    assert run.outputs("one") == {"name": "Ada"}
    assert run.result("one").commit
    assert run.read("greeting.txt") == "hello Ada\n"
    run.events.assert_order("execution.created", "checkpoint.reached", "execution.completed")
    assert run.events.assert_emitted("task.succeeded", task_id="two").task_id == "two"
    # the hooks saw the same task events, in this process
    assert recorded_events.of("task.succeeded", "one")
    with pytest.raises(KeyError, match="tasks:"):
        run.result("three")


def test_run_graph_stops_at_checkpoint_and_reports_failure(
    run_graph: Callable[..., GraphRun],
) -> None:
    graph = {
        "name": "stop",
        "tasks": [{"id": "a", "agent": "noop"}, {"id": "b", "agent": "noop", "needs": ["a"]}],
        "checkpoints": [{"after": ["a"], "question": "Go on?"}],
    }
    assert run_graph(graph, approve=False).status == "awaiting_checkpoint"
    task = {"id": "g", "agent": "greet", "with": {"name": "nobody"}}
    failing = {"name": "fails", "tasks": [task]}
    run = run_graph(failing, plugins=[greet_plugin()])
    assert run.status == "failed"
    assert "nobody to greet" in (run.result("g").error or "")
    with pytest.raises(PlanError, match="unknown agent"):
        run_graph({"name": "bad", "tasks": [{"id": "x", "agent": "nope"}]})


def test_run_graph_takes_a_plan(run_graph: Callable[..., GraphRun]) -> None:
    tasks = [TaskSpec(id="hi", agent="greet", **{"with": {"name": "plan"}})]
    checkpoints = [CheckpointAt(after=["hi"], checkpoint=CheckpointSpec(type="t", question="ok?"))]
    plan = build_plan("from-a-plan", "test", tasks, checkpoints)
    run = run_graph(plan, plugins=[greet_plugin()])
    assert run.status == "completed", run.error
    assert run.read("greeting.txt") == "hello plan\n"


# -- check_gate ----------------------------------------------------------------------


def test_check_gate(check_gate: Callable[..., RuleResult]) -> None:
    assert check_gate(HasReadme(), files={"README.md": "# x"}).passed
    failed = check_gate(HasReadme())
    assert not failed.passed and failed.remediation == "write a README.md"
    crashed = check_gate(Crashes())
    assert not crashed.passed and crashed.details.startswith("rule crashed: KeyError: 'missing' (")

    class NeedsPython(HasReadme):
        name = "needs-python"
        applies_to = ("python",)

    assert check_gate(NeedsPython()).details == "not applicable"
    assert check_gate("tests-pass", files={"test_a.py": "def test_a():\n    pass\n"}).passed


# -- EventLog ------------------------------------------------------------------------


def test_event_log_assertions_fail_with_what_was_seen() -> None:
    from connectsw import Event

    log = EventLog(
        [
            Event(execution_id="e", kind="task.started", task_id="a"),
            Event(execution_id="e", kind="task.succeeded", task_id="a"),
        ]
    )
    log.assert_order("task.started", "task.succeeded")
    with pytest.raises(AssertionError, match=r"seen: task.started\(a\), task.succeeded\(a\)"):
        log.assert_order("task.succeeded", "task.started")
    with pytest.raises(AssertionError, match="no task.failed event"):
        log.assert_emitted("task.failed")
    with pytest.raises(AssertionError, match="for task 'b'"):
        log.assert_emitted("task.started", task_id="b")


def test_importing_the_plugin_is_cheap(tmp_path: Path) -> None:
    """pytest loads connectsw.testing in every session: it imports no engine module."""
    probe = (
        "import json, sys, connectsw.testing\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed', 'pydantic', 'yaml') or m.startswith('connectsw.core'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(out.stdout) == []


def test_no_fixture_is_autouse(request: pytest.FixtureRequest) -> None:
    """A test that asks for none of the fixtures gets none of them (autouse ones would be
    in ``request.fixturenames``)."""
    import connectsw.testing as testing

    assert request.config.pluginmanager.get_plugin("connectsw") is testing  # the entry point
    fixtures = {n for n, v in vars(testing).items() if type(v).__name__.startswith("Fixture")}
    assert {"run_agent", "run_graph", "check_gate", "recorded_events"} <= fixtures
    assert not fixtures & set(request.fixturenames)


@pytest.fixture
def developer_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell and a project directory with settings of their own (set up before run_graph)."""
    (tmp_path / "connectsw.toml").write_text('[store]\nurl = "postgresql://nowhere/x"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONNECTSW_ENGINE__DEFAULT_RETRIES", "not a number")


def test_settings_from_the_environment_and_cwd_are_ignored(
    developer_settings: None, run_graph: Callable[..., GraphRun]
) -> None:
    """A developer's shell or project settings must not change a plugin's test results."""
    run = run_graph({"name": "plain", "tasks": [{"id": "a", "agent": "noop"}]})
    assert run.status == "completed", run.error
