"""A sample third-party ConnectSW plugin: one agent, one workflow, a task-event listener."""

from __future__ import annotations

from typing import Any

from connectsw import hookimpl

EVENTS: list[Any] = []


class EchoAgent:
    """Echoes its task's ``with.text``."""

    name = "sample-echo"
    description = "Echoes with.text (sample plugin)."

    def run(self, ctx: Any) -> dict[str, Any]:
        text = ctx.inputs.get("text", "")
        return {"summary": f"echo: {text}", "outputs": {"text": text}}


class EchoWorkflow:
    """Claims no built-in intent; present to show workflow registration."""

    name = "sample-echo-workflow"

    def claims(self, intent: Any) -> bool:
        return intent.kind == "sample_echo"

    def decompose(self, intent: Any, **options: Any) -> Any:
        raise NotImplementedError


@hookimpl
def register_agents(register: Any) -> None:
    register(EchoAgent())


@hookimpl
def register_workflows(register: Any) -> None:
    register(EchoWorkflow())


@hookimpl
def on_task_event(event: Any) -> None:
    EVENTS.append(event)
