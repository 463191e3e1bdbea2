"""One broken plugin affects only itself (issue 5, fault 7).

A plugin that fails at import, implements an unknown hook, crashes in a discovery
hook or collides with another is skipped and recorded with its error; the others
load; only plans that need what it may provide fail, naming it and saying how to
leave it out. Hook functions pluggy would ignore in silence (no marker, another
project's marker) are reported. ``CONNECTSW_STRICT_PLUGINS=1`` makes any of these a
:class:`PluginError`. The fixture distributions are put on ``sys.path`` with a
dist-info folder (see ``conftest.py``), as an installed plugin would be.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

from connectsw import hookimpl
from connectsw.core.engine import Engine
from connectsw.core.errors import PlanError, PluginError
from connectsw.core.models import ExecutionStatus, Request
from connectsw.core.planner import Planner
from connectsw.plugins import manager
from connectsw.plugins.manager import (
    DEFAULT_PLUGINS,
    add_plugin_commands,
    get_plugin_manager,
    plugin_infos,
    plugin_sources,
)
from connectsw.plugins.registry import get_registries

Site = Callable[..., Path]
BROKEN_ERROR = "ImportError: No module named 'connectsw_broken_dependency'"


def sources() -> dict[str, manager.PluginSource]:
    return {s.name: s for s in plugin_sources()}


def plan_graph(tmp_path: Path, text: str) -> Any:
    graph = tmp_path / "graph.yaml"
    graph.write_text(text, encoding="utf-8")
    return Planner().plan(Request(command="run", args=[str(graph)]))[1]


def add_default_plugin(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*manager.DEFAULT_PLUGINS, name))


class Agent:
    description = "test agent"

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, ctx: Any) -> dict[str, str]:
        return {"summary": "ok"}


# -- a plugin failing at import ----------------------------------------------------------


def test_import_failure_is_recorded_and_the_others_load(plugin_site: Site) -> None:
    plugin_site("broken-plugin", "sample-plugin")
    get_plugin_manager()  # does not raise
    broken, sample = sources()["broken"], sources()["sample"]
    assert broken.status == "failed"
    assert broken.error == BROKEN_ERROR
    assert broken.distribution == "connectsw-broken" and broken.version == "0.0.1"
    assert sample.status == "loaded" and sample.error is None
    regs = get_registries()
    assert regs.agents.owners["sample-echo"] == "sample"
    assert regs.agents.owners["shell"] == "connectsw.agents.builtin"
    info = {i["name"]: i for i in plugin_infos()}["broken"]
    assert info["status"] == "failed"
    assert info["error"] == BROKEN_ERROR
    assert "CONNECTSW_LOAD_PLUGINS" in info["hint"]
    assert "pip uninstall connectsw-broken" in info["hint"]
    json.dumps(plugin_infos())


def test_builtin_graph_still_plans_and_runs(
    plugin_site: Site, engine: Engine, tmp_path: Path
) -> None:
    plugin_site("broken-plugin")
    graph = tmp_path / "g.yaml"
    graph.write_text("name: ok\ntasks:\n  - {id: a, agent: noop}\n  - {id: b, agent: noop}\n")
    ex = engine.submit(Request(command="run", args=[str(graph)]), tmp_path / "ws")
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED


def test_graph_needing_an_unknown_agent_names_the_broken_plugin(
    plugin_site: Site, tmp_path: Path
) -> None:
    plugin_site("broken-plugin")
    with pytest.raises(PluginError) as info:  # exit 3: the plugin's fault
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: broken-writer}\n")
    text = str(info.value)
    assert "\n" not in text
    assert "unknown agent 'broken-writer'" in text
    assert f'plugin "broken" failed to load ({BROKEN_ERROR}); it may provide this agent' in text
    assert "CONNECTSW_LOAD_PLUGINS" in text and "pip uninstall connectsw-broken" in text


def test_graph_needing_an_unknown_gate_names_the_broken_plugin(
    plugin_site: Site, tmp_path: Path
) -> None:
    plugin_site("broken-plugin")
    with pytest.raises(PluginError) as info:
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: noop}\ngates: [lint-clean]\n")
    text = str(info.value)
    assert "unknown gate rule 'lint-clean'" in text
    assert 'plugin "broken" failed to load' in text and "it may provide this gate rule" in text


def test_unknown_agent_without_broken_plugins_has_no_plugin_hint(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: nope}\n")
    assert "failed to load" not in str(info.value)


def test_strict_mode_makes_a_broken_plugin_an_error(
    plugin_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_site("broken-plugin", "sample-plugin")
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    text = str(info.value)
    assert "\n" not in text
    assert f'plugin "broken" failed to load: {BROKEN_ERROR}' in text
    assert "CONNECTSW_STRICT_PLUGINS" in text
    assert info.value.exit_code == 3


def test_strict_mode_without_problems_loads(
    plugin_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_site("sample-plugin")
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    assert sources()["sample"].status == "loaded"
    assert get_registries().agents.get("sample-echo") is not None


def test_allow_list_leaves_a_plugin_out_unimported(
    plugin_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_site("broken-plugin", "sample-plugin")
    monkeypatch.setenv("CONNECTSW_LOAD_PLUGINS", "sample")
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    assert sources()["broken"].status == "skipped"
    assert sources()["broken"].error is None
    assert "connectsw_broken" not in sys.modules


# -- hook functions pluggy would ignore in silence -------------------------------------------


def test_unmarked_and_foreign_marked_hooks_are_reported(plugin_site: Site) -> None:
    plugin_site("unmarked-plugin")
    source = sources()["unmarked"]
    assert source.status == "loaded"
    assert source.hooks == ["register_gates"]
    assert source.warnings == [
        "function on_task_event is marked with another project's marker (other_impl), "
        "not @connectsw.hookimpl; it was ignored",
        "function register_agents is not marked with @connectsw.hookimpl; it was ignored",
    ]
    info = {i["name"]: i for i in plugin_infos()}["unmarked"]
    assert info["warnings"] == source.warnings
    assert info["gates"] == ["unmarked-ok"]


def test_unmarked_hook_fails_strict_mode(
    plugin_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_site("unmarked-plugin")
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    assert 'plugin "unmarked": function on_task_event is marked' in str(info.value)
    assert "register_agents is not marked" in str(info.value)


def test_unknown_hook_fails_only_its_plugin(plugin_site: Site, tmp_path: Path) -> None:
    plugin_site("typo-plugin", "sample-plugin")
    typo = sources()["typo"]
    assert typo.status == "failed"
    assert typo.error is not None and "unknown hook register_agentz" in typo.error
    assert sources()["sample"].status == "loaded"
    assert get_plugin_manager().get_plugin("typo") is None  # not half-registered
    assert "typo-writer" not in get_registries().agents
    with pytest.raises(PluginError, match='plugin "typo" failed to load'):
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: typo-writer}\n")
    plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: sample-echo}\n")


def test_wrong_hook_arguments_fail_only_that_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def register_agents(register: Any, colour: str) -> None:
        """Asks for an argument the hook does not have."""

    @hookimpl
    def on_task_event(event: Any) -> None:
        """Registered before register_agents fails: must not stay registered."""

    add_default_plugin(
        monkeypatch, "bad_args_plugin", register_agents=register_agents, on_task_event=on_task_event
    )
    source = sources()["bad_args_plugin"]
    assert source.status == "failed"
    assert source.error is not None and "colour" in source.error
    pm = get_plugin_manager()
    assert pm.get_plugin("bad_args_plugin") is None
    assert all(i.plugin_name != "bad_args_plugin" for i in pm.hook.on_task_event.get_hookimpls())
    assert "shell" in get_registries().agents


# -- discovery hooks ----------------------------------------------------------------------


def test_crash_in_a_discovery_hook_fails_only_that_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def register_agents(register: Any) -> None:
        register(Agent("half-done"))

    @hookimpl
    def register_gates(register: Any) -> None:
        raise RuntimeError("database unreachable")

    add_default_plugin(
        monkeypatch, "flaky", register_agents=register_agents, register_gates=register_gates
    )
    regs = get_registries()
    assert "half-done" not in regs.agents  # nothing of a failed plugin is kept
    assert "shell" in regs.agents and "tests-pass" in regs.gates
    flaky = sources()["flaky"]
    assert flaky.status == "failed"
    # the type, the message and where in the plugin's code (the innermost frame)
    assert flaky.error is not None and re.fullmatch(
        r"register_gates failed: RuntimeError: database unreachable \(test_plugin_faults\.py:\d+\)",
        flaky.error,
    )
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    manager.reset_plugin_manager()
    with pytest.raises(PluginError, match='plugin "flaky" failed to load: register_gates'):
        get_registries()


def test_collision_with_a_builtin_fails_the_third_party_plugin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    @hookimpl
    def register_agents(register: Any) -> None:
        register(Agent("clash-own"))
        register(Agent("shell"))

    add_default_plugin(monkeypatch, "shell_clash_plugin", register_agents=register_agents)
    regs = get_registries()
    assert regs.agents.owners["shell"] == "connectsw.agents.builtin"
    assert "clash-own" not in regs.agents
    clash = sources()["shell_clash_plugin"]
    assert clash.status == "failed"
    assert clash.error == (
        'Agent "shell" from plugin "shell_clash_plugin" collides with the one from plugin '
        '"connectsw.agents.builtin"'
    )
    assert sources()["connectsw.agents.builtin"].status == "loaded"
    # we know what it tried to register: only that names it
    with pytest.raises(PluginError, match='plugin "shell_clash_plugin" failed to load'):
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: clash-own}\n")
    with pytest.raises(PlanError) as info:
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: other}\n")
    assert "shell_clash_plugin" not in str(info.value)


# -- register_commands -------------------------------------------------------------------


def test_add_plugin_commands_isolates_a_failing_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def register_commands(cli: click.Group) -> None:
        @cli.command("half")
        def half() -> None:
            """Added before the crash: must be removed again."""

        raise RuntimeError("no config")

    class Good:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("hello")
            def hello() -> None:
                """Say hello."""

    add_default_plugin(monkeypatch, "bad_commands", register_commands=register_commands)
    get_plugin_manager().register(Good(), name="good_commands")
    group = click.Group("connectsw")
    add_plugin_commands(group)
    assert sorted(group.commands) == ["hello"]
    bad = sources()["bad_commands"]
    assert len(bad.warnings) == 1 and re.fullmatch(
        r"register_commands failed: RuntimeError: no config \(test_plugin_faults\.py:\d+\)",
        bad.warnings[0],
    )
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match='plugin "bad_commands": register_commands failed'):
        add_plugin_commands(click.Group("connectsw"))


# -- the CLI, in a new process -------------------------------------------------------------


def cli(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    environ["CONNECTSW_DATA_DIR"] = os.environ["CONNECTSW_DATA_DIR"]
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )
    return subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_cli_works_with_a_broken_plugin_installed(plugin_site: Site) -> None:
    site = plugin_site("broken-plugin", "unmarked-plugin", on_path=False)
    for args in (["--help"], ["status"], ["plugins"]):
        proc = cli(site, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    table = cli(site, "plugins").stdout
    assert "broken" in table and "failed" in table
    assert "connectsw_broken_dependency" in table
    assert "CONNECTSW_LOAD_PLUGINS" in table
    assert "register_agents is not marked" in table
    infos = {i["name"]: i for i in json.loads(cli(site, "plugins", "--json").stdout)}
    assert infos["broken"]["status"] == "failed"
    assert infos["broken"]["error"] == BROKEN_ERROR
    assert infos["unmarked"]["status"] == "loaded"
    assert set(DEFAULT_PLUGINS) <= set(infos)


def test_cli_strict_mode_exits_3_in_one_line(plugin_site: Site) -> None:
    site = plugin_site("broken-plugin", on_path=False)
    proc = cli(site, "plugins", CONNECTSW_STRICT_PLUGINS="1")
    assert proc.returncode == PluginError.exit_code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert 'plugin "broken" failed to load' in lines[0]


@pytest.mark.slow
def test_waiting_execution_can_be_cancelled_with_a_broken_plugin(
    plugin_site: Site, tmp_path: Path
) -> None:
    site = plugin_site("broken-plugin", on_path=False)
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: wait\ntasks:\n  - {id: a, agent: noop}\n  - {id: b, agent: noop, needs: [a]}\n"
        'checkpoints:\n  - {after: [a], question: "ok?"}\n'
    )
    env = {"CONNECTSW_DASK__PROCESSES": "false", "CONNECTSW_DASK__N_WORKERS": "1"}
    proc = cli(site, "run", str(graph), "--json", **env)
    assert proc.returncode == 0, proc.stderr
    execution_id = json.loads(proc.stdout)["executionId"]
    proc = cli(site, "cancel", execution_id, **env)
    assert proc.returncode == 0, proc.stderr


# -- a light import ---------------------------------------------------------------------------

LIGHT = """
import sys
from connectsw.cli.plugins import plugins
from connectsw.plugins.manager import plugin_infos
plugin_infos()
heavy = ("dask", "distributed", "aiohttp", "duckdb", "lancedb")
print(",".join(m for m in heavy if m in sys.modules))
"""


def test_listing_plugins_imports_no_heavy_library(plugin_site: Site) -> None:
    site = plugin_site("broken-plugin", "sample-plugin", on_path=False)
    environ = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", LIGHT], capture_output=True, text=True, env=environ, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_unknown_agent_names_the_plugin_whose_hook_is_not_marked(
    plugin_site: Site, tmp_path: Path
) -> None:
    plugin_site("unmarked-plugin")
    with pytest.raises(PluginError) as info:  # exit 3: the plugin's fault
        plan_graph(tmp_path, "name: x\ntasks:\n  - {id: a, agent: unmarked-echo}\n")
    text = str(info.value)
    assert "unknown agent 'unmarked-echo'" in text
    assert (
        'plugin "unmarked" has a function register_agents that is not marked '
        "@connectsw.hookimpl, so it was never called; it may provide this agent" in text
    )
