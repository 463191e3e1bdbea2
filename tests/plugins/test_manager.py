"""The plugin manager: built-ins, installed distributions, allow-list, tracing, errors.

The sample plugins under ``sample-plugin/`` and ``broken-plugin/`` are real
distributions: they are pip-installed (once per module) into a target folder and
discovered through their ``connectsw`` entry points, as a user's would be.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pluggy
import pytest

from connectsw import hookimpl
from connectsw.core.errors import PluginError
from connectsw.core.models import Event, Request
from connectsw.core.planner import Planner
from connectsw.plugins import manager
from connectsw.plugins.manager import (
    DEFAULT_PLUGINS,
    get_plugin_manager,
    plugin_infos,
    plugin_sources,
    reset_plugin_manager,
    tracing_enabled,
)
from connectsw.plugins.registry import get_registries
from tests.pip_target import pip_install as install_into

HERE = Path(__file__).parent


def normalize(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def pip_install(source: Path, work: Path) -> Path:
    """Install the distribution at ``source`` (copied, so no build files land here)."""
    return install_into([source], work)


@pytest.fixture(scope="module")
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(HERE / "sample-plugin", tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(HERE / "broken-plugin", tmp_path_factory.mktemp("broken"))


def cli(*paths: Path, args: tuple[str, ...] = ("plugins", "--json"), **env: str) -> Any:
    """Run ``connectsw`` in a new process with ``paths`` on its PYTHONPATH."""
    environ = dict(os.environ)
    environ.pop("CONNECTSW_DEBUG", None)
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in paths] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )
    return subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def infos_by_name(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return {info["name"]: info for info in json.loads(proc.stdout)}


# -- built-ins -------------------------------------------------------------------


def test_builtins_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTSW_LOAD_PLUGINS", "")
    infos = plugin_infos()
    assert [i["name"] for i in infos] == sorted(DEFAULT_PLUGINS)
    by_name = {i["name"]: i for i in infos}
    for info in infos:
        assert info["builtin"] is True
        assert info["distribution"] is None and info["version"] is None
    agents = by_name["connectsw.agents.builtin"]
    assert agents["hooks"] == ["register_agents"]
    assert {"product-manager", "architect", "backend-engineer", "shell", "noop"} <= set(
        agents["agents"]
    )
    assert set(by_name["connectsw.core.workflows"]["workflows"]) == {
        "new-product",
        "new-feature",
        "fix-bug",
        "task-graph",
    }
    assert by_name["connectsw.gates.rules"]["gates"] == [
        "tests-pass",
        "build",
        "server-start",
        "smoke-tests",
        "visual",
        "test-first",
        "coverage",
    ]
    json.dumps(infos)


def test_manager_is_loaded_once_and_reset() -> None:
    pm = get_plugin_manager()
    assert get_plugin_manager() is pm
    regs = get_registries()
    assert get_registries() is regs
    reset_plugin_manager()
    assert get_plugin_manager() is not pm
    assert get_registries() is not regs


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("", False), ("0", False), ("false", False), ("No", False), ("1", True), ("yes", True)],
)
def test_tracing_enabled(monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    monkeypatch.setenv("CONNECTSW_TRACE_PLUGINS", value)
    assert tracing_enabled() is enabled


def test_trace_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONNECTSW_TRACE_PLUGINS", "1")
    get_registries()
    get_plugin_manager().hook.on_task_event(event=Event(execution_id="e", kind="task.started"))
    err = capsys.readouterr().err
    assert "[connectsw trace] register_agents connectsw.agents.builtin: call" in err
    assert (
        '[connectsw trace] register_agents connectsw.agents.builtin: registered agent "shell"'
        in err
    )
    assert "[connectsw trace] on_task_event -: call (task.started)" in err
    assert re.search(r"\[connectsw trace\] on_task_event -: done in [\d.]+ ms", err), err


def test_no_trace_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    get_registries()
    get_plugin_manager().hook.on_task_event(event=Event(execution_id="e", kind="task.started"))
    assert "[connectsw trace]" not in capsys.readouterr().err


# -- an installed distribution ---------------------------------------------------------


@pytest.mark.slow
def test_installed_distribution_is_discovered(sample_site: Path) -> None:
    assert list(sample_site.glob("connectsw_sample-0.3.1.dist-info"))
    infos = infos_by_name(cli(sample_site))
    sample = infos["sample"]
    assert sample["builtin"] is False
    assert normalize(sample["distribution"]) == "connectsw-sample"
    assert sample["version"] == "0.3.1"
    assert sample["agents"] == ["sample-echo"]
    assert sample["workflows"] == ["sample-echo-workflow"]
    assert sample["hooks"] == ["on_task_event", "register_agents", "register_workflows"]
    # built-ins first, then third-party plugins
    assert list(infos)[: len(DEFAULT_PLUGINS)] == sorted(DEFAULT_PLUGINS)


@pytest.mark.slow
def test_not_discovered_without_the_distribution() -> None:
    assert "sample" not in infos_by_name(cli())


@pytest.mark.slow
def test_empty_allow_list_excludes_third_party(sample_site: Path) -> None:
    infos = infos_by_name(cli(sample_site, CONNECTSW_LOAD_PLUGINS=""))
    assert infos["sample"]["status"] == "skipped"  # listed, not imported
    assert infos["sample"]["agents"] == [] and infos["sample"]["hooks"] == []
    assert {n for n, i in infos.items() if i["status"] == "loaded"} == set(DEFAULT_PLUGINS)


@pytest.mark.slow
@pytest.mark.parametrize("allow", ["sample", " other , sample ", "connectsw-sample"])
def test_allow_list_includes_by_entry_point_or_distribution(sample_site: Path, allow: str) -> None:
    infos = infos_by_name(cli(sample_site, CONNECTSW_LOAD_PLUGINS=allow))
    assert infos["sample"]["agents"] == ["sample-echo"]


@pytest.mark.slow
def test_allow_list_naming_another_plugin_excludes(sample_site: Path) -> None:
    infos = infos_by_name(cli(sample_site, CONNECTSW_LOAD_PLUGINS="other"))
    assert infos["sample"]["status"] == "skipped"


@pytest.mark.slow
def test_trace_plugins_writes_to_stderr(sample_site: Path) -> None:
    proc = cli(sample_site, CONNECTSW_TRACE_PLUGINS="1")
    infos = infos_by_name(proc)  # stdout is still pure JSON
    assert "sample" in infos
    trace = [line for line in proc.stderr.splitlines() if line.startswith("[connectsw trace] ")]
    assert trace, proc.stderr
    assert "[connectsw trace] register_agents sample: call" in trace
    assert "[connectsw trace] register_agents connectsw.agents.builtin: call" in trace
    # the third-party agent is asked before the built-in one
    assert trace.index("[connectsw trace] register_agents sample: call") < trace.index(
        "[connectsw trace] register_agents connectsw.agents.builtin: call"
    )


@pytest.mark.slow
def test_no_trace_without_the_variable(sample_site: Path) -> None:
    proc = cli(sample_site)
    assert "[connectsw trace]" not in proc.stderr


@pytest.mark.slow
def test_broken_plugin_is_one_line_error_in_strict_mode(
    broken_site: Path, sample_site: Path
) -> None:
    assert infos_by_name(cli(sample_site, broken_site))["broken"]["status"] == "failed"
    proc = cli(sample_site, broken_site, CONNECTSW_STRICT_PLUGINS="1")
    assert proc.returncode == PluginError.exit_code
    # The listing is still printed (CI can read it), then the strict error.
    assert {p["name"]: p["status"] for p in json.loads(proc.stdout)}["broken"] == "failed"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("Error: ")
    assert 'plugin "broken"' in lines[0]
    assert "connectsw_broken_dependency" in lines[0]


@pytest.mark.slow
def test_allow_list_skips_a_broken_plugin(broken_site: Path, sample_site: Path) -> None:
    infos = infos_by_name(
        cli(sample_site, broken_site, CONNECTSW_LOAD_PLUGINS="sample", CONNECTSW_STRICT_PLUGINS="1")
    )
    assert infos["sample"]["status"] == "loaded"
    assert infos["broken"]["status"] == "skipped"
    assert infos["broken"]["error"] is None


# -- in process, with the installed distribution on sys.path -----------------------------


@pytest.fixture
def sample_on_path(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[types.ModuleType]:
    monkeypatch.syspath_prepend(str(sample_site))
    reset_plugin_manager()
    get_plugin_manager()
    yield sys.modules["connectsw_sample"]
    sys.modules.pop("connectsw_sample", None)  # the next test must not see it


@pytest.mark.slow
def test_installed_plugin_in_process(sample_on_path: types.ModuleType, tmp_path: Path) -> None:
    sources = {s.name: s for s in plugin_sources()}
    assert sources["sample"].version == "0.3.1"
    assert not sources["sample"].builtin
    regs = get_registries()
    agent = regs.agents.get("sample-echo")
    assert agent is not None
    assert regs.agents.owners["sample-echo"] == "sample"
    assert list(regs.agents.items)[0] == "sample-echo"  # third-party first
    ctx = types.SimpleNamespace(inputs={"text": "hi"})
    assert agent.run(ctx)["summary"] == "echo: hi"
    # the plugin's agent can be used in a plan
    graph = tmp_path / "g.yaml"
    graph.write_text("name: x\ntasks:\n  - {id: a, agent: sample-echo, with: {text: hi}}\n")
    _, plan = Planner().plan(Request(command="run", args=[str(graph)]))
    assert plan.task("a").agent == "sample-echo"
    # and its event hook is called
    event = Event(execution_id="e", kind="task.succeeded", task_id="a")
    get_plugin_manager().hook.on_task_event(event=event)
    assert sample_on_path.EVENTS[-1] is event


# -- errors, in process ------------------------------------------------------------------


def add_default_plugin(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, name))


def test_unknown_hook_is_plugin_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def register_agentz(register: Any) -> None:
        """A typo of register_agents."""

    add_default_plugin(monkeypatch, "typo_plugin", register_agentz=register_agentz)
    source = {s.name: s for s in plugin_sources()}["typo_plugin"]
    assert source.status == "failed"
    assert source.error is not None and "implements unknown hook register_agentz" in source.error
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    reset_plugin_manager()
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    text = str(info.value)
    assert 'plugin "typo_plugin" failed to load: implements unknown hook register_agentz' in text


def test_wrong_hook_arguments_is_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    @hookimpl
    def register_agents(register: Any, colour: str) -> None:
        """Asks for an argument the hook does not have."""

    add_default_plugin(monkeypatch, "bad_args_plugin", register_agents=register_agents)
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    assert 'plugin "bad_args_plugin"' in str(info.value)
    assert "colour" in str(info.value)


class FakeEntryPoints:
    """Stands in for importlib.metadata.entry_points with given entry points."""

    def __init__(self, *eps: EntryPoint) -> None:
        self.eps = eps

    def __call__(self, group: str) -> tuple[EntryPoint, ...]:
        return self.eps if group == manager.ENTRY_POINT_GROUP else ()


def test_entry_point_import_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("missing", "connectsw_no_such_module_xyz", manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "entry_points", FakeEntryPoints(ep))
    source = {s.name: s for s in plugin_sources()}["missing"]
    assert source.status == "failed"
    assert source.error == "ModuleNotFoundError: No module named 'connectsw_no_such_module_xyz'"
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    reset_plugin_manager()
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    text = str(info.value)
    assert text.startswith('plugin "missing" failed to load: ModuleNotFoundError: ')
    assert "connectsw_no_such_module_xyz" in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    monkeypatch.delenv("CONNECTSW_STRICT_PLUGINS")  # strict: "someone-else" is unknown
    monkeypatch.setenv("CONNECTSW_LOAD_PLUGINS", "someone-else")
    reset_plugin_manager()
    assert get_plugin_manager().get_plugin("missing") is None  # not allowed: not imported


def test_entry_point_plugin_loaded_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plugin:
        @hookimpl
        def on_execution_event(self, event: Event) -> None:
            seen.append(event)

    seen: list[Event] = []
    add_default_plugin(monkeypatch, "connectsw_fake_ep_module", plugin=Plugin())
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", DEFAULT_PLUGINS)
    ep = EntryPoint("fake", "connectsw_fake_ep_module:plugin", manager.ENTRY_POINT_GROUP)
    monkeypatch.setattr(manager, "entry_points", FakeEntryPoints(ep))
    sources = {s.name: s for s in plugin_sources()}
    assert sources["fake"].hooks == ["on_execution_event"]
    assert sources["fake"].distribution is None
    event = Event(execution_id="e", kind="execution.created")
    get_plugin_manager().hook.on_execution_event(event=event)
    assert seen == [event]


def test_plugin_error_is_not_a_pluggy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    add_default_plugin(monkeypatch, "typo2", on_task_evnt=hookimpl(lambda event: None))
    monkeypatch.setenv("CONNECTSW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    assert not isinstance(info.value, pluggy.PluginValidationError)
    assert info.value.exit_code == 3
