"""What a plugin author tried and could not do (issue 9, part B items 5 and 6).

Each fault is fixed as a kind; each case here failed before the change. The
``release-plugin`` and ``empty-plugin`` distributions are pip-installed once for
this module into a target folder and found through their ``connectsw`` entry
points, as a user's would be; the CLI runs in new processes.
``RELEASE_PLUGIN_FAULT`` makes the release plugin fail as authors' code did.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectsw import hookimpl
from connectsw.core.errors import ExitCode, PlanError, PluginError
from connectsw.core.models import Request
from connectsw.core.planner import Planner, parse_intent
from connectsw.plugins import manager
from connectsw.plugins.manager import plugin_sources, reset_plugin_manager
from connectsw.plugins.registry import Registry, get_registries
from tests.pip_target import pip_install

HERE = Path(__file__).parent
FAST_DASK = {"CONNECTSW_DASK__PROCESSES": "false", "CONNECTSW_DASK__N_WORKERS": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both fixture distributions, installed by pip in one call."""
    work = tmp_path_factory.mktemp("authors")
    return pip_install([HERE / "release-plugin", HERE / "empty-plugin"], work)


@pytest.fixture(scope="module")
def more(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two more broken distributions (fails at import; implements an unknown hook)."""
    work = tmp_path_factory.mktemp("more-authors")
    return pip_install([HERE / "broken-plugin", HERE / "typo-plugin"], work)


def cli(
    site: Path, *args: str, also: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``connectsw ARGS`` in a new process with the installed plugins on its path
    (``also``: a second site, e.g. :func:`more`)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    environ.pop("RELEASE_PLUGIN_FAULT", None)
    environ["CONNECTSW_DATA_DIR"] = os.environ["CONNECTSW_DATA_DIR"]
    environ.update(FAST_DASK)
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(site)] + [str(p) for p in [also, os.environ.get("PYTHONPATH")] if p]
    )
    return subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def infos(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return {info["name"]: info for info in json.loads(proc.stdout)}


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed plugins on this process's path (the release module is forgotten after)."""
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    reset_plugin_manager()
    yield
    for name in ("connectsw_release", "connectsw_empty"):
        sys.modules.pop(name, None)


# -- 1. a workflow claims a new command ---------------------------------------------------


def test_commands_come_from_the_workflows(on_path: None) -> None:
    table = get_registries().workflow_commands()
    assert {c: w.name for c, w in table.items()} == {
        "new product": "new-product",
        "new feature": "new-feature",
        "fix": "fix-bug",
        "fix bug": "fix-bug",
        "run": "task-graph",
        "release": "release",
    }
    intent, plan = Planner().plan(Request(command="release", args=["v1.2"]))
    assert intent.kind == "release" and intent.subject == "v1.2"
    assert plan.workflow == "release" and plan.name == "release-v1.2"
    with pytest.raises(PlanError) as info:
        parse_intent(Request(command="deploy", args=["it"]))
    assert "known: fix, fix bug, new feature, new product, release, run" in str(info.value)


def test_a_plugin_workflow_runs_as_a_cli_command(site: Path, tmp_path: Path) -> None:
    proc = cli(site, "release", "v1.2", "--yes", "--json", "-w", str(tmp_path / "ws"))
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["status"] == "completed"
    assert answer["command"] == "release" and answer["title"] == "v1.2"
    assert answer["tasks"] == {"changelog": "succeeded", "tag": "succeeded"}
    help_text = cli(site, "--help").stdout
    assert re.search(r"release\s+Cut a release: changelog and tag note\.", help_text), help_text


def test_a_workflow_cannot_take_a_command_another_has(site: Path) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="builtin-command"))
    assert found["release"]["status"] == "failed"
    assert found["release"]["error"] == (
        'Command "fix" of workflow "hijack" from plugin "release" collides with workflow '
        '"fix-bug" from plugin "connectsw.core.workflows"'
    )


@pytest.mark.parametrize("words", ["status", "fix something", "memory search"])
def test_a_workflow_cannot_claim_a_built_in_cli_command(site: Path, words: str) -> None:
    # The built-in command would answer first: the workflow's command could never run.
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT=f"cli-command:{words}"))
    assert found["release"]["status"] == "failed"
    first = words.split()[0]
    assert found["release"]["error"] == (
        f'Command "{words}" of workflow "shadow" from plugin "release" starts with the'
        f' built-in command "{first}" (only "new ..." can be added to a built-in command)'
    )


def test_a_plugin_command_submits_through_the_public_function(site: Path, tmp_path: Path) -> None:
    proc = cli(site, "release-notes", "v2.0", "-w", str(tmp_path / "ws"))
    assert proc.returncode == 0, proc.stderr
    execution_id = re.findall(r"release execution (\S+)", proc.stdout)[-1]
    status = cli(site, "status", execution_id, "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["status"] == "completed"
    assert view["command"] == "release" and view["title"] == "v2.0"


def test_submit_in_process_returns_the_execution_id(
    on_path: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.submission import submit

    for key, value in FAST_DASK.items():
        monkeypatch.setenv(key, value)
    execution_id = submit("release", "v3.0", workspace=tmp_path / "ws", yes=True)
    from connectsw.conf.settings import get_settings
    from connectsw.core.stores import get_store

    execution = get_store(get_settings().store_url).get_execution(execution_id)
    assert execution.plan.workflow == "release"
    assert execution.status.value == "completed"
    with pytest.raises(PlanError, match="unknown command 'nope'"):
        submit("nope", "x", workspace=tmp_path / "ws")


# -- 2. a plugin's exception names the plugin, its entry point and how to leave it out ----

ENTRY = "entry point release = connectsw_release, connectsw-release 1.4.0"
LEAVE_OUT = "to leave it out, set CONNECTSW_LOAD_PLUGINS=empty"


@pytest.mark.parametrize(
    ("fault", "args", "what", "error"),
    [
        ("decompose-keyerror", ("release", "v1"), 'workflow "release" decompose', "KeyError: 'm"),
        ("decompose-assert", ("release", "v1"), 'workflow "release" decompose', "AssertionError"),
        ("decompose-json", ("release", "v1"), 'workflow "release" decompose', "JSONDecodeError"),
        ("claims-error", ("release", "v1"), 'workflow "release" claims', "RuntimeError: claims ex"),
        ("commands-keyerror", ("release-notes", "v1"), "register_commands", "KeyError: 'missing'"),
        ("commands-assert", ("release-notes", "v1"), "register_commands", "AssertionError"),
        ("command-body", ("release-notes", "v1"), 'command "release-notes"', "KeyError: 'missing'"),
    ],
)
def test_plugin_code_failing_names_the_plugin(
    site: Path, tmp_path: Path, fault: str, args: tuple[str, ...], what: str, error: str
) -> None:
    if args[0] == "release-notes":
        proc = cli(site, *args, "-w", str(tmp_path), RELEASE_PLUGIN_FAULT=fault)
    else:
        proc = cli(site, *args, "--plan-only", "-w", str(tmp_path), RELEASE_PLUGIN_FAULT=fault)
    assert proc.returncode == ExitCode.PLUGIN, proc.stderr
    line = one_error_line(proc)
    assert "internal error" not in line
    assert line.startswith('Error: plugin "release" failed: '), line
    assert what in line and error in line
    assert re.search(r"\(connectsw_release\.py:\d+\)", line), line
    assert ENTRY in line and LEAVE_OUT in line
    # the hint works, and other commands kept working all along
    assert cli(site, "status", RELEASE_PLUGIN_FAULT=fault).returncode == 0
    assert cli(site, "plugins", RELEASE_PLUGIN_FAULT=fault).returncode == 0
    left_out = cli(
        site, "plugins", "--json", RELEASE_PLUGIN_FAULT=fault, CONNECTSW_LOAD_PLUGINS="empty"
    )
    assert infos(left_out)["release"]["status"] == "skipped"


def test_connectsw_debug_shows_the_plugin_code_traceback(site: Path, tmp_path: Path) -> None:
    args = ("release", "v1", "--plan-only", "-w", str(tmp_path))
    quiet = cli(site, *args, RELEASE_PLUGIN_FAULT="decompose-json")
    assert quiet.returncode == ExitCode.PLUGIN and "Traceback" not in quiet.stderr
    loud = cli(site, *args, RELEASE_PLUGIN_FAULT="decompose-json", CONNECTSW_DEBUG="1")
    assert loud.returncode == ExitCode.PLUGIN
    assert "Traceback (most recent call last)" in loud.stderr
    assert "in parse_manifest" in loud.stderr and "json.decoder.JSONDecodeError" in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-1].startswith('Error: plugin "release" failed')


def test_a_workflow_whose_claims_raises_fails_only_the_requests_it_would_take(
    site: Path, tmp_path: Path
) -> None:
    # The plugin's workflow is asked first; its claims() raising must not stop the
    # built-in workflows from planning requests that are theirs.
    proc = cli(
        site, "fix", "x", "--plan-only", "-w", str(tmp_path), RELEASE_PLUGIN_FAULT="claims-error"
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "claims raised" in line]
    assert len(warnings) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert 'plugin "release" failed: workflow "release" claims raised RuntimeError' in warnings[0]
    assert LEAVE_OUT in warnings[0]


def test_a_failing_event_listener_is_one_line_once_and_the_run_goes_on(
    site: Path, tmp_path: Path
) -> None:
    args = ("release", "v1", "--yes", "--json", "-w", str(tmp_path))
    proc = cli(site, *args, RELEASE_PLUGIN_FAULT="event-error")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "listener broke" in x]
    assert 'plugin "release" failed: on_task_event raised ValueError: listener broke' in line
    assert re.search(r"\(connectsw_release\.py:\d+\)", line) and LEAVE_OUT in line


def test_a_plugin_command_with_a_taken_name_is_refused_with_a_warning(
    site: Path, tmp_path: Path
) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="command-clash"))
    release = found["release"]
    assert release["status"] == "loaded"
    assert [c["name"] for c in release["registered"]["commands"]] == ["release-notes"]
    assert release["warnings"] == [
        'register_commands: command "release" collides with the command "release" of'
        ' workflow "release"; not added',
        'register_commands: command "status" collides with the built-in command "status";'
        " not added",
    ]
    # The built-in and the workflow's commands still answer.
    status = cli(site, "status", RELEASE_PLUGIN_FAULT="command-clash")
    assert status.returncode == 0 and "plugin status" not in status.stdout
    clash = {"RELEASE_PLUGIN_FAULT": "command-clash"}
    run = cli(site, "release", "v1", "--plan-only", "-w", str(tmp_path), **clash)
    assert run.returncode == 0 and "plugin release" not in run.stdout, run.stderr
    strict = cli(site, "plugins", CONNECTSW_STRICT_PLUGINS="1", **clash)
    assert strict.returncode == ExitCode.PLUGIN


def test_a_register_hook_failing_keeps_the_type_and_place(site: Path, tmp_path: Path) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="agents-keyerror"))
    error = found["release"]["error"]
    assert re.fullmatch(
        r"register_agents failed: KeyError: 'missing' \(connectsw_release\.py:\d+\)", error
    ), error
    proc = cli(site, "release", "v1", "--plan-only", RELEASE_PLUGIN_FAULT="agents-keyerror")
    assert proc.returncode == ExitCode.PLUGIN  # the plugin's fault, not the input's
    line = one_error_line(proc)
    assert "unknown command 'release'" in line
    assert 'plugin "release" failed to load (register_agents failed: KeyError' in line
    assert LEAVE_OUT in line


def test_plugins_text_view_shows_the_leave_out_setting(site: Path) -> None:
    text = cli(site, "plugins", RELEASE_PLUGIN_FAULT="agents-keyerror").stdout
    assert "CONNECTSW_LOAD_PLUGINS=empty" in text
    assert "connectsw_release" in text  # the entry point


# -- 3. invalid registrations are refused at once; an entry point without hooks is reported --


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("agent-class", "registered the class ChangelogAgent as an agent"),
        ("workflow-class", "registered the class ReleaseWorkflow as a workflow"),
        ("gate-class", "registered the class NoopGate as a gate rule"),
    ],
)
def test_registering_a_class_fails_the_plugin(site: Path, fault: str, expected: str) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT=fault))
    assert found["release"]["status"] == "failed"
    error = found["release"]["error"]
    assert error.startswith(f'Plugin "release" {expected}'), error
    assert "register an instance" in error and "\n" not in error


class Provider:
    name = "klass-llm"
    description = "a provider class"

    def complete(self, messages: Any, **options: Any) -> Any:
        raise NotImplementedError

    def stream(self, messages: Any, **options: Any) -> Any:
        raise NotImplementedError


class Embedder:
    name = "klass-embedder"
    dim = 3

    def embed(self, texts: Any) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("hook", "item", "kind"),
    [
        ("register_llm_providers", Provider, "an LLM provider"),
        ("register_embedders", Embedder, "an embedder"),
    ],
)
def test_registering_a_class_fails_for_every_kind(
    monkeypatch: pytest.MonkeyPatch, hook: str, item: type, kind: str
) -> None:
    def register_things(register: Any) -> None:
        register(item)

    module = types.ModuleType("klass_plugin")
    setattr(module, hook, hookimpl(register_things))
    monkeypatch.setitem(sys.modules, "klass_plugin", module)
    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*manager.DEFAULT_PLUGINS, "klass_plugin"))
    regs = get_registries()
    assert item.name not in regs.llm_providers and item.name not in regs.embedders  # type: ignore[attr-defined]
    source = {s.name: s for s in plugin_sources()}["klass_plugin"]
    assert source.error == (
        f'Plugin "klass_plugin" registered the class {item.__name__} as {kind}; register an '
        f"instance: register({item.__name__}())"
    )
    with pytest.raises(PluginError):
        Registry("agent", ("run",)).add(Provider, "x")


def test_an_entry_point_without_hooks_is_reported(site: Path) -> None:
    found = infos(cli(site, "plugins", "--json"))
    assert found["empty"]["status"] == "loaded"
    assert found["empty"]["warnings"] == [
        "entry point connectsw_empty:plugin provides no hooks (no function marked "
        "@connectsw.hookimpl); it does nothing"
    ]
    proc = cli(site, "plugins", CONNECTSW_STRICT_PLUGINS="1")
    assert proc.returncode == ExitCode.PLUGIN
    assert 'plugin "empty": entry point connectsw_empty:plugin provides no hooks' in one_error_line(
        proc
    )


# -- 4. CONNECTSW_LOAD_PLUGINS: unknown names, filtered-out providers ---------------------------


def test_unknown_names_in_the_allow_list_are_reported(site: Path) -> None:
    proc = cli(site, "plugins", "--json", CONNECTSW_LOAD_PLUGINS="releese,empty,nope")
    assert infos(proc)["release"]["status"] == "skipped"  # stdout is still JSON
    assert (
        "Warning: CONNECTSW_LOAD_PLUGINS names no installed plugin: nope, releese "
        "(installed: empty, release)"
    ) in proc.stderr
    strict = cli(site, "plugins", CONNECTSW_LOAD_PLUGINS="releese", CONNECTSW_STRICT_PLUGINS="1")
    assert strict.returncode == ExitCode.PLUGIN
    assert "names no installed plugin: releese" in one_error_line(strict)
    assert (
        "names no installed plugin"
        not in cli(site, "plugins", CONNECTSW_LOAD_PLUGINS="empty").stderr
    )


INCLUDE = (
    'plugin "release" (connectsw-release 1.4.0) provides it but CONNECTSW_LOAD_PLUGINS leaves '
    "it out; to include it, set CONNECTSW_LOAD_PLUGINS=empty,release"
)


@pytest.mark.parametrize(
    ("graph", "unknown"),
    [
        ("tasks:\n  - {id: a, agent: release-changelog}\n", "unknown agent 'release-changelog'"),
        (
            "tasks:\n  - {id: a, agent: noop}\ngates: [release-ready]\n",
            "unknown gate rule 'release-ready'",
        ),
    ],
)
def test_unknown_name_says_which_filtered_plugin_provides_it(
    site: Path, tmp_path: Path, graph: str, unknown: str
) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("name: g\n" + graph, encoding="utf-8")
    proc = cli(site, "run", str(path), "--plan-only", CONNECTSW_LOAD_PLUGINS="empty")
    assert proc.returncode == ExitCode.INVALID_INPUT
    line = one_error_line(proc)
    assert unknown in line and INCLUDE in line


def test_a_filtered_workflow_command_says_how_to_include_it(site: Path) -> None:
    proc = cli(site, "release", "v1", "--plan-only", CONNECTSW_LOAD_PLUGINS="empty")
    assert proc.returncode == ExitCode.INVALID_INPUT
    line = one_error_line(proc)
    assert "unknown command 'release'" in line and INCLUDE in line


# -- 5. one trace format: each hook call and what each plugin registered ------------------------

TRACE = re.compile(r"\[connectsw trace\] (?P<hook>[a-z_]+) (?P<plugin>\S+): (?P<what>.+)")


def test_trace_has_one_format_and_shows_registrations(site: Path, tmp_path: Path) -> None:
    proc = cli(
        site,
        "release",
        "v1",
        "--yes",
        "--json",
        "-w",
        str(tmp_path / "ws"),
        CONNECTSW_TRACE_PLUGINS="1",
    )
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[connectsw trace]")]
    assert lines, proc.stderr
    bad = [line for line in lines if not TRACE.fullmatch(line)]
    assert not bad, bad
    assert "[connectsw trace] register_agents release: call" in lines
    assert (
        '[connectsw trace] register_agents release: registered agent "release-changelog"' in lines
    )
    assert (
        '[connectsw trace] register_workflows release: registered workflow "release" '
        "(commands: release)" in lines
    )
    assert '[connectsw trace] register_gates release: registered gate rule "release-ready"' in lines
    assert (
        '[connectsw trace] register_commands release: registered command "release-notes"' in lines
    )
    assert any(
        re.fullmatch(r"\[connectsw trace\] on_task_event \S+: call \(task\.\w+\)", x) for x in lines
    )
    assert any(
        re.fullmatch(r"\[connectsw trace\] on_task_event \S+: done in [\d.]+ ms", x) for x in lines
    )


# -- 6. connectsw plugins --json: version, entry point, hooks, what was registered --------


def test_plugins_json_shows_what_each_plugin_registered(site: Path) -> None:
    found = infos(cli(site, "plugins", "--json"))
    release = found["release"]
    assert release["version"] == "1.4.0"
    assert release["entry_point"] == "connectsw_release"
    assert release["hooks"] == [
        "on_task_event",
        "register_agents",
        "register_commands",
        "register_gates",
        "register_workflows",
    ]
    assert release["registered"] == {
        "agents": [
            {
                "name": "release-changelog",
                "description": "Writes CHANGELOG.md for a release (release plugin).",
            }
        ],
        "workflows": [
            {
                "name": "release",
                "description": "Cut a release: changelog and tag note.",
                "commands": ["release"],
            }
        ],
        "gates": [{"name": "release-ready", "description": "Always passes (release plugin)."}],
        "embedders": [],
        "llm_providers": [],
        "commands": [
            {"name": "release-notes", "help": "Cut a release through the public submit function."}
        ],
    }
    assert release["agents"] == ["release-changelog"]  # the name lists stay
    workflows = found["connectsw.core.workflows"]["registered"]["workflows"]
    assert {w["name"]: w["commands"] for w in workflows}["fix-bug"] == ["fix", "fix bug"]
    providers = found["connectsw.agents.llm.builtin"]["registered"]["llm_providers"]
    assert {"openai", "anthropic"} <= {p["name"] for p in providers}
    assert all(p["description"] for p in providers)
    assert found["connectsw.agents.builtin"]["entry_point"] is None
    help_text = cli(site, "plugins", "--help").stdout
    for key in ("entry_point", "registered", "commands", "description", "llm_providers"):
        assert key in help_text


def test_plugins_json_for_a_broken_plugin_names_its_entry_point(site: Path) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="commands-keyerror"))
    release = found["release"]
    assert release["entry_point"] == "connectsw_release"
    assert release["warnings"][0].startswith(
        "register_commands failed: KeyError: 'missing' (connectsw_release.py:"
    )
    assert release["registered"]["commands"] == []
    text = cli(site, "plugins", RELEASE_PLUGIN_FAULT="commands-keyerror").stdout
    assert "release (entry point connectsw_release): register_commands failed: KeyError" in text


# -- 1b. a workflow command under the built-in group `new` ----------------------------------


class NewReleaseWorkflow:
    name = "new-release"
    kind = "new_release"
    commands = ("new release",)
    description = "A release of a new kind."

    def claims(self, intent: Any) -> bool:
        return bool(intent.kind == self.kind)

    def decompose(self, intent: Any, **options: Any) -> Any:
        from connectsw.core.models import TaskSpec
        from connectsw.core.planner import build_plan

        return build_plan("new-release", self.name, [TaskSpec(id="a", agent="noop")])


def test_a_workflow_command_under_new_joins_the_new_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from connectsw.cli.main import cli as main_cli
    from connectsw.cli.submit import new

    module = types.ModuleType("new_release_plugin")
    module.register_workflows = hookimpl(lambda register: register(NewReleaseWorkflow()))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "new_release_plugin", module)
    monkeypatch.setattr(
        manager, "DEFAULT_PLUGINS", (*manager.DEFAULT_PLUGINS, "new_release_plugin")
    )
    manager.get_plugin_manager()
    try:
        result = CliRunner().invoke(
            main_cli, ["new", "release", "v1", "--plan-only", "--json", "-w", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["plan"]["workflow"] == "new-release"
    finally:
        new.commands.pop("release", None)


# -- 7. what a second new-user trial found --------------------------------------------------


def test_trace_times_imports_and_registrations_and_shows_every_failure(
    site: Path, more: Path
) -> None:
    proc = cli(site, "plugins", "--json", also=more, CONNECTSW_TRACE_PLUGINS="1")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[connectsw trace]")]
    bad = [line for line in lines if not TRACE.fullmatch(line)]
    assert not bad, bad
    text = "\n".join(lines)
    assert re.search(r"^\[connectsw trace\] import release: done in [\d.]+ ms$", text, re.M), text
    assert (
        "[connectsw trace] import broken: failed: ImportError: "
        "No module named 'connectsw_broken_dependency'" in lines
    )
    assert re.search(
        r"^\[connectsw trace\] register typo: failed: implements unknown hook register_agentz",
        text,
        re.M,
    ), text
    assert re.search(
        r"^\[connectsw trace\] register_agents release: done in [\d.]+ ms \(1 registered\)$",
        text,
        re.M,
    ), text
    assert re.search(
        r"^\[connectsw trace\] register_commands release: done in [\d.]+ ms \(1 registered\)$",
        text,
        re.M,
    ), text


def write_graph(tmp_path: Path, agent: str) -> Path:
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"name: g\ntasks:\n  - {{id: a, agent: {agent}}}\n")
    return graph


@pytest.mark.parametrize(
    ("fault", "args", "unknown"),
    [
        ("agent-class", ("run", "GRAPH"), "unknown agent 'release-changelog'"),
        ("agents-keyerror", ("run", "GRAPH"), "unknown agent 'release-changelog'"),
        ("workflow-class", ("release", "v1"), "unknown command 'release'"),
        # the workflow was registered, but the plugin also adds CLI commands of its own
        ("gate-class", ("release", "v1"), "unknown command 'release'"),
    ],
)
def test_what_a_failed_plugin_may_provide_is_a_plugin_error_naming_it(
    site: Path, tmp_path: Path, fault: str, args: tuple[str, ...], unknown: str
) -> None:
    graph = str(write_graph(tmp_path, "release-changelog"))
    argv = [graph if a == "GRAPH" else a for a in args]
    proc = cli(site, *argv, "--plan-only", "-w", str(tmp_path / "ws"), RELEASE_PLUGIN_FAULT=fault)
    assert proc.returncode == ExitCode.PLUGIN, proc.stderr
    line = one_error_line(proc)
    assert unknown in line, line
    assert 'plugin "release" failed to load (' in line and "it may provide this" in line, line
    assert LEAVE_OUT in line


def test_a_failed_plugin_keeps_none_of_its_cli_commands(site: Path, tmp_path: Path) -> None:
    fault = {"RELEASE_PLUGIN_FAULT": "agents-keyerror"}
    found = infos(cli(site, "plugins", "--json", **fault))
    assert found["release"]["status"] == "failed"
    assert found["release"]["registered"]["commands"] == []
    assert "release-notes" not in cli(site, "--help", **fault).stdout
    proc = cli(site, "release-notes", "v1", "-w", str(tmp_path), **fault)
    assert proc.returncode == ExitCode.PLUGIN, proc.stderr
    line = one_error_line(proc)
    assert "'release-notes'" in line and 'plugin "release" failed to load' in line, line
    assert "it may provide this command" in line and LEAVE_OUT in line


def test_the_leave_out_hint_leaves_out_every_failed_plugin(
    site: Path, more: Path, tmp_path: Path
) -> None:
    fault = {"RELEASE_PLUGIN_FAULT": "agents-keyerror"}
    found = infos(cli(site, "plugins", "--json", also=more, **fault))
    assert {n for n, i in found.items() if i["status"] == "failed"} == {"release", "broken", "typo"}
    for name in ("release", "broken", "typo"):
        assert found[name]["hint"].startswith("set CONNECTSW_LOAD_PLUGINS=empty,"), found[name]
    # following the hint leaves no failed plugin
    value = found["broken"]["hint"].split("=", 1)[1].split(",", 1)[0]
    after = infos(cli(site, "plugins", "--json", also=more, CONNECTSW_LOAD_PLUGINS=value, **fault))
    assert not [n for n, i in after.items() if i["status"] == "failed"]


@pytest.mark.parametrize(
    ("fault", "printed"),
    [
        ("event-print", "listener saw task."),
        ("agent-print", "changelog agent writes v1"),
        ("decompose-print", "planning release v1"),
    ],
)
def test_what_plugin_code_prints_does_not_break_json(
    site: Path, tmp_path: Path, fault: str, printed: str
) -> None:
    args = ("release", "v1", "--yes", "--json", "-w", str(tmp_path))
    proc = cli(site, *args, RELEASE_PLUGIN_FAULT=fault)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    assert printed in proc.stderr


def test_plugin_new_refuses_a_name_a_plugin_command_has(site: Path, tmp_path: Path) -> None:
    proc = cli(
        site,
        "plugin",
        "new",
        "release-notes",
        "--kind",
        "workflow",
        "--directory",
        str(tmp_path / "p"),
    )
    assert proc.returncode == ExitCode.INVALID_INPUT, proc.stderr
    line = one_error_line(proc)
    assert "`connectsw release-notes` is already a command" in line
    assert not (tmp_path / "p").exists()


def test_plugins_table_keeps_whole_names_at_80_columns(site: Path) -> None:
    proc = cli(site, "plugins", COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    for name in ("connectsw.agents.llm.builtin", "connectsw.core.memory_embedders", "release"):
        assert name in proc.stdout, proc.stdout
    assert "\u2026" not in proc.stdout


def test_the_plan_line_counts_in_words_that_agree(site: Path, tmp_path: Path) -> None:
    proc = cli(site, "release", "v1", "--plan-only", "-w", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "(release, 2 tasks, no checkpoints)" in proc.stdout, proc.stdout
    graph = tmp_path / "one.yaml"
    graph.write_text(
        "name: one\ntasks:\n  - {id: a, agent: noop}\n"
        "checkpoints: [{after: [a], question: Go on}]\n"
    )
    one = cli(site, "run", str(graph), "--plan-only", "-w", str(tmp_path / "ws"))
    assert one.returncode == 0, one.stderr
    assert "1 task, 1 checkpoint)" in one.stdout, one.stdout


# -- 8. what a third new-user trial found ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("input-model-raises", 'failed: agent "release-changelog" input_model raised KeyError'),
        ("decompose-none", 'failed: workflow "release" decompose raised TypeError: returned'),
    ],
)
def test_plugin_code_that_breaks_while_planning_is_exit_3_naming_it(
    site: Path, tmp_path: Path, fault: str, expected: str
) -> None:
    proc = cli(
        site, "release", "v1", "--plan-only", "-w", str(tmp_path), RELEASE_PLUGIN_FAULT=fault
    )
    assert proc.returncode == ExitCode.PLUGIN, proc.stderr
    line = one_error_line(proc)
    assert "internal error" not in line
    assert line.startswith('Error: plugin "release" ') and expected in line, line
    assert LEAVE_OUT in line


def test_an_input_model_that_is_not_a_pydantic_model_is_refused_at_registration(
    site: Path,
) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="input-model-dict"))
    assert found["release"]["status"] == "failed"
    assert "whose input_model is <class 'dict'>, not a pydantic model" in found["release"]["error"]


def test_an_agent_that_raises_names_its_plugin_and_place(site: Path, tmp_path: Path) -> None:
    args = ("release", "v1", "--yes", "--json", "-w", str(tmp_path))
    proc = cli(site, *args, RELEASE_PLUGIN_FAULT="agent-keyerror")
    assert proc.returncode == ExitCode.FAILED, proc.stderr
    assert "Traceback" not in proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["tasks"]["changelog"] == "failed"
    assert re.fullmatch(
        r"task 'changelog' failed: agent \"release-changelog\" of plugin \"release\" raised "
        r"KeyError: 'agent-missing' \(connectsw_release\.py:\d+\)",
        answer["error"],
    ), answer["error"]


class ThreadAgent:
    name = "bad-isolation"
    isolation = "proces"

    def run(self, ctx: Any) -> Any:
        return {"summary": "x"}


def test_an_agent_with_an_unknown_isolation_is_refused() -> None:
    with pytest.raises(PluginError, match="with isolation 'proces' \\(one of: process, thread\\)"):
        Registry("agent", ("run",)).add(ThreadAgent(), "acme")


def test_an_agent_subclass_without_run_is_refused() -> None:
    from connectsw import Agent

    class NoRun(Agent):
        name = "no-run"

    with pytest.raises(PluginError, match="without its own run"):
        Registry("agent", ("run",)).add(NoRun(), "acme")


def test_a_left_out_plugins_cli_command_says_how_to_include_it(site: Path, tmp_path: Path) -> None:
    proc = cli(site, "release-notes", "v1", CONNECTSW_LOAD_PLUGINS="empty")
    assert proc.returncode == ExitCode.INVALID_INPUT, proc.stderr
    line = one_error_line(proc)
    assert "'release-notes'" in line
    assert 'plugin "release" (connectsw-release 1.4.0) provides it' in line, line
    assert "set CONNECTSW_LOAD_PLUGINS=empty,release" in line


@pytest.mark.parametrize(
    ("fault", "args"),
    [
        ("claims-error", ("fix", "x", "--plan-only", "-w", "WS")),
        ("commands-keyerror", ("fix", "x", "--plan-only", "-w", "WS")),
        ("commands-keyerror", ("status",)),
    ],
)
def test_strict_mode_makes_a_plugin_failing_at_run_time_an_error(
    site: Path, tmp_path: Path, fault: str, args: tuple[str, ...]
) -> None:
    argv = [str(tmp_path) if a == "WS" else a for a in args]
    env = {"RELEASE_PLUGIN_FAULT": fault, "CONNECTSW_LOAD_PLUGINS": "release"}
    loose = cli(site, *argv, **env)
    assert loose.returncode == 0, loose.stderr
    proc = cli(site, *argv, **env, CONNECTSW_STRICT_PLUGINS="1")
    assert proc.returncode == ExitCode.PLUGIN, proc.stderr
    line = one_error_line(proc)
    assert 'plugin "release"' in line, line


def test_approve_refuses_when_the_next_stage_needs_an_uninstalled_plugin(
    site: Path, more: Path, tmp_path: Path
) -> None:
    graph = tmp_path / "cp.yaml"
    graph.write_text(
        "name: cp\ntasks:\n  - {id: a, agent: noop}\n"
        "  - {id: b, agent: release-changelog, needs: [a]}\n"
        "checkpoints: [{after: [a], question: Go on}]\n"
    )
    ws = str(tmp_path / "ws")
    waiting = cli(site, "run", str(graph), "--json", "-w", ws)
    answer = json.loads(waiting.stdout)
    assert answer["status"] == "awaiting_checkpoint", waiting.stderr
    execution = answer["executionId"]
    # the plugin is gone (a site without it): the decision is refused, nothing is decided
    gone = cli(more, "approve", execution, CONNECTSW_LOAD_PLUGINS="")
    assert gone.returncode == ExitCode.NOT_ALLOWED, gone.stderr
    line = one_error_line(gone)
    assert "the next stages need agent 'release-changelog', which is not installed" in line
    assert "nothing was decided" in line
    back = cli(site, "approve", execution, "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["status"] == "completed"


# -- a plugin's gate rule that crashes or returns no RuleResult (issue 9, B6) ---------------

GATED_GRAPH = "name: g\ntasks:\n  - {id: a, agent: noop}\ngates: [release-ready]\n"
RULE_PLACE = re.compile(r"connectsw_release\.py:\d+")


def run_gated(site: Path, tmp_path: Path, fault: str, **env: str) -> tuple[str, Any, str]:
    """``connectsw run`` of a graph gated by the release plugin's rule; the execution's
    id, its ``status --json`` and the run's stderr."""
    tmp_path.mkdir(exist_ok=True)
    graph = tmp_path / "g.yaml"
    graph.write_text(GATED_GRAPH, encoding="utf-8")
    proc = cli(
        site, "run", str(graph), "-w", str(tmp_path / "ws"), RELEASE_PLUGIN_FAULT=fault, **env
    )
    assert proc.returncode != ExitCode.INTERNAL, proc.stderr
    assert "Traceback" not in proc.stderr or env.get("CONNECTSW_DEBUG")
    found = re.search(r"\b(exec_[0-9a-f]+)\b", proc.stdout)
    assert found, proc.stdout + proc.stderr
    status = cli(site, "status", found.group(1), "--json", RELEASE_PLUGIN_FAULT=fault)
    assert status.returncode == ExitCode.FAILED, status.stderr  # never a crash
    return found.group(1), json.loads(status.stdout), proc.stderr


@pytest.mark.parametrize(
    ("fault", "details"),
    [
        ("gate-none", "rule crashed: returned NoneType, not RuleResult"),
        ("gate-true", "rule crashed: returned bool, not RuleResult"),
        ("gate-raise", "rule crashed: JSONDecodeError: Expecting property name"),
    ],
)
def test_a_crashed_gate_rule_fails_its_gate_at_once_naming_the_plugin(
    site: Path, tmp_path: Path, fault: str, details: str
) -> None:
    execution_id, view, stderr = run_gated(site, tmp_path, fault)
    assert view["status"] == "gate_failed", view
    rule = view["gate"]["rules"][0]
    assert rule["rule"] == "release-ready" and not rule["passed"]
    assert details in rule["details"] and 'plugin "release"' in rule["details"], rule
    assert RULE_PLACE.search(rule["details"]), rule
    # no remediation round: the agents cannot fix a plugin's bug
    assert view["round"] == 0, view
    assert "plugin" in view["error"], view
    # status keeps working; the on-demand check fails the rule, it does not crash
    again = cli(site, "status", execution_id, RELEASE_PLUGIN_FAULT=fault)
    assert again.returncode == ExitCode.FAILED and not again.stderr, again.stderr
    check = cli(
        site,
        "gates",
        "check",
        "--rule",
        "release-ready",
        "--workspace",
        str(tmp_path / "ws"),
        RELEASE_PLUGIN_FAULT=fault,
    )
    assert check.returncode == ExitCode.FAILED, check.stderr
    assert details in check.stdout + check.stderr and "Traceback" not in check.stderr


def test_a_raising_gate_rule_logs_one_line_and_the_traceback_only_in_debug(
    site: Path, tmp_path: Path
) -> None:
    _, _, stderr = run_gated(site, tmp_path / "quiet", "gate-raise")
    crashed = [line for line in stderr.splitlines() if "release-ready" in line and "crash" in line]
    assert len(crashed) == 1, stderr
    assert 'plugin "release"' in crashed[0] and "JSONDecodeError" in crashed[0], crashed
    assert RULE_PLACE.search(crashed[0]) and "Traceback" not in stderr, stderr
    _, _, loud = run_gated(site, tmp_path / "loud", "gate-raise", CONNECTSW_DEBUG="1")
    assert "Traceback (most recent call last)" in loud and "in parse_manifest" in loud, loud


def test_a_gate_rule_with_an_unknown_applies_to_is_refused_at_registration(site: Path) -> None:
    found = infos(cli(site, "plugins", "--json", RELEASE_PLUGIN_FAULT="gate-applies-typo"))
    assert found["release"]["status"] == "failed"
    error = found["release"]["error"]
    assert 'Plugin "release"' in error and '"release-ready"' in error, error
    assert "'pyhton'" in error and "python" in error and "page" in error, error


class _Rule:
    name = "limits"
    applies_to = ("python",)

    def __init__(self, **limits: Any) -> None:
        for key, value in limits.items():
            setattr(self, key, value)

    def applies(self, ctx: Any) -> bool:
        return True

    def evaluate(self, ctx: Any) -> Any:
        raise AssertionError("not run")


@pytest.mark.parametrize(
    ("limits", "said"),
    [
        ({"isolation": "proces"}, "with isolation 'proces' (one of: process, thread)"),
        ({"timeout": "30"}, "with timeout '30' (seconds: a finite number above 0, or None)"),
        ({"timeout": -1}, "with timeout -1 "),
        ({"timeout": 0}, "with timeout 0 "),
        ({"timeout": float("nan")}, "with timeout nan "),
        ({"timeout": True}, "with timeout True "),
        ({"timeout": 10**400}, "with timeout 1000"),  # past float's range (trial 8)
    ],
)
def test_a_gate_rule_with_a_bad_isolation_or_timeout_is_refused_at_registration(
    limits: dict[str, Any], said: str
) -> None:
    """Trial 7: a forked rule's isolation and timeout were read only when a gate ran (a
    timeout of "30" crashed the gate with a ValueError; a typo forked the rule)."""
    with pytest.raises(PluginError) as info:
        Registry("gate rule", ("applies", "evaluate")).add(_Rule(**limits), "acme")
    assert str(info.value).startswith('Plugin "acme" registered gate rule "limits" ' + said)


def test_a_gate_rule_with_good_limits_is_registered() -> None:
    registry = Registry("gate rule", ("applies", "evaluate"))
    registry.add(_Rule(isolation="thread", timeout=1e12), "acme")
    registry.add(type("Other", (_Rule,), {"name": "other"})(timeout=5), "acme")
    assert sorted(registry.items) == ["limits", "other"]
