"""Light commands import no heavy library: ``--help``, ``plugins`` and ``status``.

Each case runs the CLI's ``main`` in a fresh ``python -c`` process (so nothing
this test process imported counts), on an empty data dir, then reports which of
the heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("dask", "distributed", "lancedb", "duckdb", "aiohttp")
# Models built whenever settings are read (status reads them).
SETTINGS_MODULES = ("connectsw.conf.", "connectsw.licensing.tiers:")

PROBE = """
import importlib.metadata, json, sys

scans = []  # the groups of importlib.metadata.entry_points calls (each reads every dist)
_entry_points = importlib.metadata.entry_points


def counted(**params):
    scans.append(params.get("group"))
    return _entry_points(**params)


importlib.metadata.entry_points = counted
from connectsw.cli.main import main

code = 0
try:
    main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
watched = json.loads(sys.argv[2])
heavy = sorted(w for w in watched if any(m == w or m.startswith(w + ".") for m in sys.modules))
built = []  # connectsw's pydantic models whose validator was built (defer_build: on first use)
pydantic = sys.modules.get("pydantic")
todo = [pydantic.BaseModel] if pydantic is not None else []
while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if cls.__module__.startswith("connectsw.") and cls.__pydantic_complete__:
        built.append(f"{cls.__module__}:{cls.__name__}")
with open(sys.argv[3], "w") as f:
    json.dump({"code": code, "heavy": heavy, "built": sorted(built), "scans": scans}, f)
"""


def probe(
    args: list[str], tmp_path: Path, watched: tuple[str, ...] = HEAVY, **extra_env: str
) -> dict[str, object]:
    """Run ``main(args)`` in a new interpreter; its exit code and the heavy modules imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(extra_env)
    env.update(
        CONNECTSW_DATA_DIR=str(tmp_path / "data"),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        NO_COLOR="1",
    )
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(watched), str(report)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.is_file(), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), f"{args}: {result}\n{proc.stdout}\n{proc.stderr}"
    return result


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["plugins"],
        ["status"],
    ],
    ids=["help", "plugins", "status"],
)
def test_light_commands_import_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    assert probe(args, tmp_path)["heavy"] == []


def test_help_imports_no_command_and_no_settings(tmp_path: Path) -> None:
    """The command list comes from main's table: no command module, no pydantic-settings."""
    commands = ("connectsw.cli.submit", "connectsw.cli.status", "connectsw.cli.decide")
    watched = (*HEAVY, "pydantic_settings", "connectsw.conf.settings", *commands)
    assert probe(["--help"], tmp_path, watched)["heavy"] == []


def test_a_command_s_own_help_is_light(tmp_path: Path) -> None:
    assert probe(["run", "--help"], tmp_path)["heavy"] == []


def test_the_probe_sees_heavy_imports(tmp_path: Path) -> None:
    """The probe itself works: running a graph does import distributed."""
    (tmp_path / "g.yaml").write_text("name: tiny\ntasks:\n  - {id: only, agent: noop}\n")
    ran = probe(
        ["run", "g.yaml", "--yes", "--json"],
        tmp_path,
        CONNECTSW_DASK__PROCESSES="false",
        CONNECTSW_DASK__N_WORKERS="1",
    )
    assert "distributed" in ran["heavy"]  # type: ignore[operator]


def test_plugins_loads_no_settings_numpy_or_asyncio(tmp_path: Path) -> None:
    """Listing plugins imports the built-in plugin modules, not what they use to run:
    pydantic-settings (~100 ms), numpy (~150 ms, for embeddings), asyncio (model calls)."""
    watched = (*HEAVY, "pydantic_settings", "numpy", "asyncio", "yaml")
    assert probe(["plugins"], tmp_path, watched)["heavy"] == []


def test_status_imports_no_plugin_machinery_or_client(tmp_path: Path) -> None:
    """``status`` lists executions: no pluggy, no ``limits`` (a settings check), no HTTP
    client (local mode), no progress bars (``watch`` only)."""
    watched = (*HEAVY, "pluggy", "limits", "urllib.request", "rich.progress", "importlib.metadata")
    found = probe(["status"], tmp_path, watched)["heavy"]
    assert found in ([], ["importlib.metadata"]), found  # pydantic may look for its plugins


@pytest.mark.parametrize("args", [["plugins"], ["status"]], ids=["plugins", "status"])
def test_light_commands_build_no_model_validator(args: list[str], tmp_path: Path) -> None:
    """core.models' and the agents' models are ``defer_build``: importing them builds no
    validator (about 50 ms for core.models); ``status`` on an empty store validates
    nothing but its settings."""
    built = probe(args, tmp_path)["built"]
    assert [b for b in built if not b.startswith(SETTINGS_MODULES)] == [], built


def test_the_probe_sees_built_models(tmp_path: Path) -> None:
    """The probe itself works: ``run`` validates a plan, so Plan's validator is built."""
    (tmp_path / "g.yaml").write_text("name: tiny\ntasks:\n  - {id: only, agent: noop}\n")
    ran = probe(
        ["run", "g.yaml", "--yes", "--json"],
        tmp_path,
        CONNECTSW_DASK__PROCESSES="false",
        CONNECTSW_DASK__N_WORKERS="1",
    )
    assert "connectsw.core.models:Plan" in ran["built"]  # type: ignore[operator]


def test_plugins_reads_the_entry_points_once(tmp_path: Path) -> None:
    """Each look through the installed distributions' entry points reads every one of
    them: ``plugins`` loads the plugins first, so asking for their commands reads none."""
    assert probe(["plugins"], tmp_path)["scans"] == ["connectsw"]
