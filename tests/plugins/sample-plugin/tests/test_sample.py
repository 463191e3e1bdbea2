"""The sample plugin's own tests, as its author writes them: connectsw.testing's fixtures.

They run against the installed distribution (its entry point); ConnectSW's suite
installs it and runs them (tests/plugins/test_sample_plugin.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import connectsw_sample

from connectsw import AgentProtocol, Intent, Request, WorkflowProtocol
from connectsw.testing import AgentRun, EventLog, GraphRun


def test_contracts() -> None:
    assert isinstance(connectsw_sample.EchoAgent(), AgentProtocol)
    assert isinstance(connectsw_sample.EchoWorkflow(), WorkflowProtocol)


def test_echo_agent(run_agent: Callable[..., AgentRun]) -> None:
    run = run_agent("sample-echo", {"text": "hi"})  # found through the entry point
    assert run.summary == "echo: hi"
    assert run.outputs == {"text": "hi"}


def test_graph_with_the_agent(
    run_graph: Callable[..., GraphRun], recorded_events: EventLog
) -> None:
    graph: dict[str, Any] = {
        "name": "echoes",
        "tasks": [
            {"id": "a", "agent": "sample-echo", "with": {"text": "one"}},
            {"id": "b", "agent": "sample-echo", "with": {"text": "two"}, "needs": ["a"]},
        ],
    }
    run = run_graph(graph)
    assert run.status == "completed", run.error
    assert run.outputs("b") == {"text": "two"}
    run.events.assert_order("task.succeeded", "execution.completed")
    recorded_events.assert_emitted("task.succeeded", task_id="b")
    # the plugin's own on_task_event hook was called as well
    assert any(e.task_id == "b" and e.kind == "task.succeeded" for e in connectsw_sample.EVENTS)


def test_workflow_plan_runs(run_graph: Callable[..., GraphRun]) -> None:
    workflow = connectsw_sample.EchoWorkflow()
    intent = Intent(kind="sample_echo", subject="hello", request=Request(command="echo"))
    assert workflow.claims(intent)
    run = run_graph(workflow.decompose(intent))
    assert run.status == "completed", run.error
    assert run.outputs("echo") == {"text": "hello"}
