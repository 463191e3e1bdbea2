"""A sample third-party ConnectSW plugin: one agent, one workflow, a task-event listener.

Everything comes from the public surface, ``from connectsw import ...``; its own
tests (``tests/``) use the fixtures of ``connectsw.testing``.
"""

from __future__ import annotations

from typing import Any

from connectsw import (
    Event,
    Intent,
    Plan,
    TaskContext,
    TaskSpec,
    build_plan,
    hookimpl,
    slugify,
)

EVENTS: list[Event] = []


class EchoAgent:
    """Echoes its task's ``with.text``."""

    name = "sample-echo"
    description = "Echoes with.text (sample plugin)."

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        text = ctx.inputs.get("text", "")
        return {"summary": f"echo: {text}", "outputs": {"text": text}}


class EchoWorkflow:
    """Claims ``sample_echo`` intents: one task echoing the request's text."""

    name = "sample-echo-workflow"

    def claims(self, intent: Intent) -> bool:
        return intent.kind == "sample_echo"

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        task = TaskSpec(id="echo", agent="sample-echo", **{"with": {"text": intent.subject}})
        return build_plan(f"echo-{slugify(intent.subject)}", self.name, [task])


@hookimpl
def register_agents(register: Any) -> None:
    register(EchoAgent())


@hookimpl
def register_workflows(register: Any) -> None:
    register(EchoWorkflow())


@hookimpl
def on_task_event(event: Event) -> None:
    EVENTS.append(event)
