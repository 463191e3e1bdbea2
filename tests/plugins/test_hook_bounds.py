"""Every plugin hook call is bounded (issue 5, kind 7; trial 6).

A ``register_*`` hook, ``register_commands`` or the hooks asked of a plugin left out
by ``CONNECTSW_LOAD_PLUGINS`` that does not return within the bound (the import
timeout, ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT``) fails that plugin, and the others go
on. The stuck calls wait on an event that the test sets at its end, so no thread
outlives it.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from connectsw import hookimpl
from connectsw.core.errors import PlanError, PluginError
from connectsw.core.models import Request
from connectsw.core.planner import Planner
from connectsw.plugins import manager
from connectsw.plugins.manager import (
    IMPORT_TIMEOUT_ENV,
    UNFINISHED,
    add_plugin_commands,
    call_bounded,
    get_plugin_manager,
    plugin_sources,
)
from connectsw.plugins.registry import get_registries

BOUND = 0.3


class Agent:
    description = "test agent"

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, ctx: Any) -> dict[str, str]:
        return {"summary": "ok"}


@pytest.fixture
def release(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Set at the end of the test: every stuck hook returns then."""
    monkeypatch.setenv(IMPORT_TIMEOUT_ENV, str(BOUND))
    event = threading.Event()
    yield event
    event.set()


def add_plugin(monkeypatch: pytest.MonkeyPatch, name: str, **hooks: Any) -> None:
    module = types.ModuleType(name)
    for key, value in hooks.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*manager.DEFAULT_PLUGINS, name))


def status(name: str) -> manager.PluginSource:
    return next(s for s in plugin_sources() if s.name == name)


def test_call_bounded_returns_raises_or_gives_up() -> None:
    assert call_bounded(lambda x: x + 1, {"x": 1}, 5, "t") == 2
    with pytest.raises(SystemExit):
        call_bounded(lambda: sys.exit(3), {}, 5, "t")
    gate = threading.Event()
    start = time.monotonic()
    assert call_bounded(gate.wait, {}, 0.2, "t") is UNFINISHED
    assert time.monotonic() - start < 2
    gate.set()


def test_a_keyboard_interrupt_raised_by_plugin_code_is_the_plugins_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trial 7, F3: a plugin raising KeyboardInterrupt (at import, or in a hook) made
    every command that loads plugins say "Interrupted" and exit 130, for ever. No
    signal caused it (signals reach the main thread only): it is that plugin's failure."""

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(PluginError, match="KeyboardInterrupt raised by its code"):
        call_bounded(interrupt, {}, 5, "t")

    @hookimpl
    def register_agents(register: Any) -> None:
        raise KeyboardInterrupt

    add_plugin(monkeypatch, "interrupting", register_agents=register_agents)
    regs = get_registries()
    assert "noop" in regs.agents.items
    assert status("interrupting").status == "failed"
    assert "KeyboardInterrupt raised by its code" in (status("interrupting").error or "")


def test_os_exit_called_by_plugin_code_is_the_plugins_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trial 7, F4: ``os._exit(0)`` at a plugin's import or in its hook ended ``run`` with
    exit 0 and no work done. Inside a plugin call it is that plugin's failure; anywhere
    else (this thread, a forked child) it still ends the process."""
    import os

    with pytest.raises(PluginError, match=r"its code called os._exit\(0\)"):
        call_bounded(os._exit, {"status": 0}, 5, "t")

    @hookimpl
    def register_agents(register: Any) -> None:
        os._exit(0)

    add_plugin(monkeypatch, "exiting", register_agents=register_agents)
    regs = get_registries()
    assert "noop" in regs.agents.items
    assert status("exiting").status == "failed"
    assert status("exiting").error == "its code called os._exit(0)"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(7)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 7


def test_a_register_hook_that_hangs_fails_its_plugin_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    asked: list[str] = []

    @hookimpl
    def register_agents(register: Any) -> None:
        register(Agent("early"))
        release.wait()
        register(Agent("late"))  # after the bound: ignored

    @hookimpl
    def register_gates(register: Any) -> None:
        asked.append("register_gates")  # never: a plugin stuck once is asked no more

    add_plugin(monkeypatch, "stuck", register_agents=register_agents, register_gates=register_gates)
    start = time.monotonic()
    regs = get_registries()
    assert time.monotonic() - start < BOUND + 5
    assert "shell" in regs.agents and "tests-pass" in regs.gates  # the others loaded
    assert "early" not in regs.agents
    stuck = status("stuck")
    assert stuck.status == "failed"
    assert stuck.error == f"register_agents did not return within {BOUND:g} s"
    release.set()
    time.sleep(0.2)  # the abandoned call registers "late" now
    assert "late" not in get_registries().agents and asked == []
    with pytest.raises(
        PluginError, match=r'plugin "stuck" failed to load \(register_agents did not return'
    ):
        Planner().plan(Request(command="run", args=[str(graph(Path.cwd(), "early"))]))
    release.clear()  # stuck again
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    manager.reset_plugin_manager()
    with pytest.raises(PluginError, match='plugin "stuck" failed to load: register_agents did not'):
        get_registries()


def test_a_register_commands_that_hangs_adds_nothing_even_later(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    @hookimpl
    def register_commands(cli: click.Group) -> None:
        release.wait()

        @cli.command("late")
        def late() -> None:
            """Added after the bound: must never appear."""

    class Good:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("hello")
            def hello() -> None:
                """Say hello."""

    add_plugin(monkeypatch, "stuck_commands", register_commands=register_commands)
    get_plugin_manager().register(Good(), name="good_commands")
    group = click.Group("connectsw")
    start = time.monotonic()
    add_plugin_commands(group)
    assert time.monotonic() - start < BOUND + 5
    assert sorted(group.commands) == ["hello"]
    assert status("stuck_commands").warnings == [
        f"register_commands did not return within {BOUND:g} s"
    ]
    release.set()
    time.sleep(0.2)
    assert sorted(group.commands) == ["hello"]
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match='"stuck_commands": register_commands did not return'):
        add_plugin_commands(click.Group("connectsw"))


PROBED = """
import threading

from connectsw import hookimpl

RELEASE = threading.Event()


@hookimpl
def register_agents(register):
    RELEASE.wait()
"""


def graph(root: Path, agent: str) -> Path:
    path = root / "g.yaml"
    path.write_text(f"name: x\ntasks:\n  - {{id: a, agent: {agent}}}\n", encoding="utf-8")
    return path


def test_asking_a_left_out_plugin_whose_hook_hangs_is_bounded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, release: threading.Event
) -> None:
    site = tmp_path / "site"
    info = site / "connectsw_probed-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "connectsw_probed.py").write_text(PROBED)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: connectsw-probed\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[connectsw]\nprobed = connectsw_probed\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CONNECTSW_LOAD_PLUGINS", "")
    try:
        start = time.monotonic()
        with pytest.raises(PlanError, match="unknown"):
            Planner().plan(Request(command="run", args=[str(graph(tmp_path, "nowhere"))]))
        assert time.monotonic() - start < BOUND + 5
    finally:
        module = sys.modules.pop("connectsw_probed", None)
        if module is not None:
            module.RELEASE.set()
