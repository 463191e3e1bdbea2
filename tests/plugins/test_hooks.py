"""Every hook is documented, tested, and called where the docs say."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from connectsw import hookimpl
from connectsw.cli.main import main
from connectsw.core.engine import Engine
from connectsw.core.models import Decision, Event, ExecutionStatus, Request
from connectsw.plugins import hookspecs
from connectsw.plugins.manager import get_plugin_manager

TESTS = Path(__file__).resolve().parents[1]


def hook_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "connectsw_spec")
    ]


def test_there_are_hooks() -> None:
    assert {"register_agents", "register_workflows", "register_gates", "on_task_event"} <= set(
        hook_names()
    )


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 20, f"hook {name} needs a docstring saying what it receives and returns"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_test(name: str) -> None:
    users = [p for p in TESTS.rglob("*.py") if f"def {name}(" in p.read_text()]
    assert users, f"no test implements hook {name}"


class Recorder:
    """Implements the three event hooks and keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def on_execution_event(self, event: Event) -> None:
        self.seen.append(("execution", event.kind))

    @hookimpl
    def on_task_event(self, event: Event) -> None:
        self.seen.append(("task", event.kind))

    @hookimpl
    def on_checkpoint_event(self, event: Event) -> None:
        self.seen.append(("checkpoint", event.kind))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    get_plugin_manager().register(rec, name="recorder")
    yield rec
    get_plugin_manager().unregister(name="recorder")


def test_event_hooks_see_every_kind_of_event(
    engine: Engine, recorder: Recorder, tmp_path: Path
) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: hooks\ntasks:\n  - {id: a, agent: noop}\n  - {id: b, agent: noop, needs: [a]}\n"
        'checkpoints:\n  - {after: [a], question: "ok?"}\n'
    )
    ex = engine.submit(Request(command="run", args=[str(graph)]), tmp_path / "ws")
    engine.run(ex.id)
    engine.decide(ex.id, Decision.APPROVE)
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    seen = recorder.seen
    assert ("execution", "execution.created") in seen
    assert ("execution", "execution.completed") in seen
    assert seen.count(("task", "task.started")) == 2
    assert seen.count(("task", "task.succeeded")) == 2
    assert ("checkpoint", "checkpoint.reached") in seen
    assert ("checkpoint", "checkpoint.decided") in seen
    assert not any(group == "task" and not kind.startswith("task.") for group, kind in seen)


class Commands:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("hello")
        @click.argument("name")
        def hello(name: str) -> None:
            """Say hello (from a plugin)."""
            click.echo(f"hello {name}")


def test_register_commands_adds_cli_commands(capsys: pytest.CaptureFixture[str]) -> None:
    get_plugin_manager().register(Commands(), name="commands")
    try:
        main(["hello", "world"])
    finally:
        get_plugin_manager().unregister(name="commands")
        from connectsw.cli.main import cli

        cli.commands.pop("hello", None)
    assert capsys.readouterr().out == "hello world\n"


class EchoProvider:
    """A third-party provider: answers with the last message, costs nothing."""

    name = "echo"
    description = "Echoes the last message"

    def complete(self, messages: Any, **options: Any) -> Any:
        from connectsw.agents.llm.base import Completion

        return Completion(messages[-1].content, 1, 1, 0.0)

    def stream(self, messages: Any, **options: Any) -> Any:
        yield messages[-1].content


class EchoPlugin:
    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        register(EchoProvider())


def test_register_llm_providers_adds_a_provider_beside_the_builtins() -> None:
    from connectsw.plugins.registry import get_registries

    get_plugin_manager().register(EchoPlugin(), name="echo-plugin")
    providers = get_registries().llm_providers
    assert list(providers.items) == ["echo", "openai", "anthropic", "llm"]
    assert providers.owners["echo"] == "echo-plugin"
    from connectsw.plugins.manager import plugin_infos

    info = {i["name"]: i for i in plugin_infos()}
    assert info["connectsw.agents.llm.builtin"]["llm_providers"] == ["openai", "anthropic", "llm"]
