"""A workflow plugin as an author would write it: ``connectsw release VERSION``.

It claims the new command ``release`` (a workflow's ``commands``), adds its own
CLI command ``release-notes`` that submits through the public submit function,
and registers an agent. ``RELEASE_PLUGIN_FAULT`` makes it fail the ways plugin
authors' code did (the tests set it): ``decompose-keyerror``,
``decompose-assert``, ``claims-error``, ``commands-keyerror``,
``commands-assert``, ``command-body``, ``agents-keyerror``, ``agent-class``,
``workflow-class``, ``gate-class``, ``builtin-command``, ``event-error``,
``command-clash``, ``decompose-json``, ``event-print``, ``agent-print``,
``decompose-print`` (plugin code that prints), ``input-model-raises``,
``input-model-dict``, ``agent-keyerror``, ``decompose-none``,
``cli-command:WORDS`` (a workflow claiming ``WORDS``, e.g. a built-in command's);
gate-rule faults: ``gate-none`` (``evaluate`` forgets ``return``), ``gate-true``
(returns True), ``gate-raise``, ``gate-applies-typo`` (``applies_to`` misspelt).
"""

from __future__ import annotations

import json
import os
from typing import Any

import click
from pydantic import BaseModel, field_validator

from connectsw import hookimpl
from connectsw.core.models import Intent, Plan, RuleResult, TaskSpec
from connectsw.core.planner import build_plan

FAULT = os.environ.get("RELEASE_PLUGIN_FAULT", "")


def parse_manifest(text: str) -> Any:
    """A helper of the plugin's whose library call raises deep inside the library."""
    return json.loads(text)


class ReleaseInput(BaseModel):
    """The changelog agent's ``with`` block."""

    version: str = ""

    @field_validator("version")
    @classmethod
    def known(cls, value: str) -> str:
        if FAULT == "input-model-raises":
            return {"v0": value}[value]  # a validator that itself breaks
        return value


class ChangelogAgent:
    """Writes the changelog line of a release."""

    name = "release-changelog"
    description = "Writes CHANGELOG.md for a release (release plugin)."
    input_model: Any = dict if FAULT == "input-model-dict" else ReleaseInput

    def run(self, ctx: Any) -> dict[str, Any]:
        if FAULT == "agent-keyerror":
            return {}["agent-missing"]  # type: ignore[no-any-return]
        version = ctx.inputs.get("version", "")
        if FAULT == "agent-print":
            print(f"changelog agent writes {version}")
        return {"summary": f"changelog for {version}", "outputs": {"version": version}}


class ReleaseWorkflow:
    """``connectsw release v1.2``: a changelog, then a tag note."""

    name = "release"
    kind = "release"
    commands = ("release",)
    description = "Cut a release: changelog and tag note."

    def claims(self, intent: Intent) -> bool:
        if FAULT == "claims-error":
            raise RuntimeError("claims exploded")
        return intent.kind == self.kind

    def decompose(self, intent: Intent, **options: Any) -> Plan:
        if FAULT == "decompose-print":
            print(f"planning release {intent.subject}")
        if FAULT == "decompose-none":
            return None  # type: ignore[return-value]
        if FAULT == "decompose-keyerror":
            return {}["missing"]  # type: ignore[no-any-return]
        if FAULT == "decompose-json":
            parse_manifest("{bad")
        if FAULT == "decompose-assert":
            assert intent.subject.startswith("release-")
        version = intent.subject
        tasks = [
            TaskSpec(id="changelog", agent="release-changelog", with_={"version": version}),
            TaskSpec(id="tag", agent="noop", needs=["changelog"]),
        ]
        return build_plan(f"release-{version}", self.name, tasks)


class NoopGate:
    name = "release-ready"
    description = "Always passes (release plugin)."
    applies_to = ("pyhton",) if FAULT == "gate-applies-typo" else ()

    def applies(self, ctx: Any) -> bool:
        return True

    def evaluate(self, ctx: Any) -> Any:
        if FAULT == "gate-none":
            RuleResult(rule=self.name, passed=True)  # forgot the return
            return None
        if FAULT == "gate-true":
            return True
        if FAULT == "gate-raise":
            return parse_manifest("{bad")
        return RuleResult(rule=self.name, passed=True, details="ready")


@hookimpl
def register_agents(register: Any) -> None:
    if FAULT == "agents-keyerror":
        {}["missing"]
    register(ChangelogAgent if FAULT == "agent-class" else ChangelogAgent())


@hookimpl
def register_workflows(register: Any) -> None:
    register(ReleaseWorkflow if FAULT == "workflow-class" else ReleaseWorkflow())
    if FAULT == "builtin-command":

        class Hijack(ReleaseWorkflow):
            name = "hijack"
            kind = "hijack"
            commands = ("fix",)

        register(Hijack())
    if FAULT.startswith("cli-command:"):

        class Shadow(ReleaseWorkflow):
            name = "shadow"
            kind = "shadow"
            commands = (FAULT.split(":", 1)[1],)

        register(Shadow())


@hookimpl
def register_gates(register: Any) -> None:
    register(NoopGate if FAULT == "gate-class" else NoopGate())


@hookimpl
def register_commands(cli: click.Group) -> None:
    if FAULT == "commands-keyerror":
        {}["missing"]
    if FAULT == "commands-assert":
        assert cli.name == "not-connectsw"

    if FAULT == "command-clash":

        @cli.command("status")
        def status() -> None:
            """Shadows the built-in status (refused)."""
            click.echo("plugin status")

        @cli.command("release")
        def release() -> None:
            """Shadows this plugin's own workflow command (refused)."""
            click.echo("plugin release")

    @cli.command("release-notes")
    @click.argument("version")
    @click.option("--workspace", "-w", default=".", help="The project's directory.")
    def release_notes(version: str, workspace: str) -> None:
        """Cut a release through the public submit function."""
        if FAULT == "command-body":
            raise KeyError("missing")
        from connectsw.submission import submit

        execution_id = submit("release", version, workspace=workspace, yes=True)
        click.echo(f"release execution {execution_id}")


@hookimpl
def on_task_event(event: Any) -> None:
    if FAULT == "event-error":
        raise ValueError(f"listener broke on {event.kind}")
    if FAULT == "event-print":
        print(f"listener saw {event.kind}")
