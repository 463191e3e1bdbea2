"""Registries: every registered item is attributed to its plugin; problems name them."""

from __future__ import annotations

import re
import sys
import types
from typing import Any

import pluggy
import pytest

from connectsw import hookimpl
from connectsw.core.errors import PluginError
from connectsw.plugins import hookspecs, manager
from connectsw.plugins.manager import DEFAULT_PLUGINS
from connectsw.plugins.registry import Registry, build_registries, get_registries


class Agent:
    def __init__(self, name: Any) -> None:
        self.name = name
        self.description = "test agent"

    def run(self, ctx: Any) -> dict[str, str]:
        return {"summary": "ok"}


class AgentPlugin:
    """A plugin registering the given agents."""

    def __init__(self, *agents: Any) -> None:
        self.agents = agents

    @hookimpl
    def register_agents(self, register: Any) -> None:
        for agent in self.agents:
            register(agent)


def fresh_pm(**plugins: Any) -> pluggy.PluginManager:
    """A plugin manager with the host's hookspecs and only the given plugins."""
    pm = pluggy.PluginManager("connectsw")
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


# -- Registry.add ------------------------------------------------------------------


def test_add_and_lookup() -> None:
    reg: Registry[Any] = Registry("agent", ("run",))
    a, b = Agent("alpha"), Agent("beta.v2")
    reg.add(a, "one")
    reg.add(b, "two")
    assert reg.get("alpha") is a
    assert reg.get("gamma") is None
    assert "beta.v2" in reg and "gamma" not in reg
    assert list(reg) == [a, b]
    assert reg.names_of("two") == ["beta.v2"]
    assert reg.names_of("three") == []


def test_collision_names_both_plugins() -> None:
    reg: Registry[Any] = Registry("agent", ("run",))
    reg.add(Agent("writer"), "first-plugin")
    with pytest.raises(PluginError) as info:
        reg.add(Agent("writer"), "second-plugin")
    text = str(info.value)
    assert text == (
        'Agent "writer" from plugin "second-plugin" collides with the one from plugin '
        '"first-plugin"'
    )
    assert reg.owners["writer"] == "first-plugin"


@pytest.mark.parametrize("name", ["Writer", "has space", "", "-dash", "9lives", None, 42, "é"])
def test_invalid_name_names_the_plugin(name: Any) -> None:
    reg: Registry[Any] = Registry("agent", ("run",))
    with pytest.raises(PluginError) as info:
        reg.add(Agent(name), "my-plugin")
    text = str(info.value)
    assert 'Plugin "my-plugin" registered a agent with an invalid name' in text
    assert repr(name) in text
    assert reg.items == {}


def test_missing_method_names_plugin_and_item() -> None:
    reg: Registry[Any] = Registry("workflow", ("claims", "decompose"))

    class Half:
        name = "half"

        def claims(self, intent: Any) -> bool:
            return True

        decompose = "not callable"

    with pytest.raises(PluginError) as info:
        reg.add(Half(), "wf-plugin")
    assert str(info.value) == 'Plugin "wf-plugin" registered workflow "half" without decompose()'


# -- build_registries over a plugin manager ------------------------------------------------


def test_collision_between_plugins_names_both() -> None:
    pm = fresh_pm(
        acme=AgentPlugin(Agent("writer")), globex=AgentPlugin(Agent("writer"), Agent("other"))
    )
    regs = build_registries(pm)
    # neither third-party plugin takes the name: both fail, whole (a newly installed
    # plugin must not silently replace the agent a plan used)
    assert regs.failures == {
        "acme": 'Agent "writer" from plugin "acme" collides with the one from plugin "globex"',
        "globex": 'Agent "writer" from plugin "globex" collides with the one from plugin "acme"',
    }
    assert regs.agents.owners == {}
    # every kind's list is complete (nothing raised): it provides no other agent
    empty = {"workflow": [], "gate rule": [], "embedder": [], "LLM provider": [], "command": []}
    assert regs.offered == {
        "acme": {"agent": ["writer"], **empty},
        "globex": {"agent": ["writer", "other"], **empty},
    }


def test_invalid_item_from_plugin_names_it() -> None:
    pm = fresh_pm(acme=AgentPlugin(Agent("good"), Agent("Bad Name")), other=AgentPlugin(Agent("x")))
    regs = build_registries(pm)
    assert regs.failures["acme"].startswith('Plugin "acme" registered a agent with an invalid name')
    assert list(regs.agents.items) == ["x"]  # nothing of acme, all of the other


def test_crash_in_discovery_hook_names_the_plugin() -> None:
    class Crashing:
        @hookimpl
        def register_gates(self, register: Any) -> None:
            raise RuntimeError("database unreachable")

    pm = fresh_pm(flaky=Crashing())
    regs = build_registries(pm)
    assert list(regs.failures) == ["flaky"]
    assert re.fullmatch(
        r"register_gates failed: RuntimeError: database unreachable \(test_registry\.py:\d+\)",
        regs.failures["flaky"],
    )


def test_items_attributed_to_their_plugin_in_call_order() -> None:
    class Last:
        @hookimpl(trylast=True)
        def register_agents(self, register: Any) -> None:
            register(Agent("late"))

    pm = fresh_pm(last=Last(), one=AgentPlugin(Agent("a1")), two=AgentPlugin(Agent("b1")))
    regs = build_registries(pm)
    # pluggy's call order: last registered first, trylast at the end
    assert list(regs.agents.items) == ["b1", "a1", "late"]
    assert regs.agents.owners == {"b1": "two", "a1": "one", "late": "last"}
    assert list(regs.workflows.items) == [] and list(regs.gates.items) == []


def test_third_party_colliding_with_builtin_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("shell_clash_plugin")
    module.register_agents = hookimpl(  # type: ignore[attr-defined]
        lambda register: register(Agent("shell"))
    )
    monkeypatch.setitem(sys.modules, "shell_clash_plugin", module)
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, "shell_clash_plugin"))
    assert get_registries().agents.owners["shell"] == "connectsw.agents.builtin"
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    manager.reset_plugin_manager()
    with pytest.raises(PluginError) as info:
        get_registries()
    text = str(info.value)
    assert 'Agent "shell"' in text
    assert '"shell_clash_plugin"' in text
    assert '"connectsw.agents.builtin"' in text


def test_builtin_registries() -> None:
    regs = get_registries()
    assert regs.agents.owners["shell"] == "connectsw.agents.builtin"
    assert regs.workflows.owners["new-product"] == "connectsw.core.workflows"
    assert regs.gates.owners["tests-pass"] == "connectsw.gates.rules"
    # workflows are asked in registration order; the graph workflow is among them
    assert [w.name for w in regs.workflows][:4] == [
        "new-product",
        "new-feature",
        "fix-bug",
        "task-graph",
    ]
