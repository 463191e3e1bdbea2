"""The wheel holds the whole package (code, data, console script) and nothing else.

The wheel is built from a copy of the source tree (so no ``build/`` or egg-info
lands in the repository), installed with ``--no-deps`` into a fresh venv, and
the CLI run from there. The fresh venv sees the test venv's dependencies through
a ``.pth`` line naming its site-packages: that adds the directory to ``sys.path``
without running the ``.pth`` files in it, so the editable install of connectsw
stays invisible and only the wheel's copy can be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

import connectsw

pytestmark = pytest.mark.slow

ROOT = Path(connectsw.__file__).resolve().parent
SUBPACKAGES = [
    "core",
    "core/stores",
    "plugins",
    "agents",
    "gates",
    "licensing",
    "web",
    "cli",
    "conf",
]
DATA_FILES = ["connectsw/conf/default.toml", "connectsw/core/taskgraph.schema.json"]
NOT_PACKAGED = {"tests", "bench", "scripts", "build", "dist"}
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".venv",
)


def run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from (a copy of) the repository."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    out = base / "out"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            out,
            src,
        ]
    )
    wheels = list(out.glob("connectsw-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def source_packages() -> set[str]:
    """Every directory of the source tree with an ``__init__.py`` (outside tests etc.)."""
    found = set()
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and (rel.parts[0] in NOT_PACKAGED or rel.parts[0].startswith(".")):
            continue
        found.add("/".join(("connectsw", *rel.parts)))
    return found


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in DATA_FILES:
        assert data in names, f"{data} is not in the wheel"
    assert "connectsw/__init__.py" in names
    for sub in SUBPACKAGES:
        assert f"connectsw/{sub}/__init__.py" in names, f"subpackage {sub} is not in the wheel"
    # A package added to the source tree but not to pyproject's list would be missing.
    missing = {p for p in source_packages() if f"{p}/__init__.py" not in names}
    assert not missing, f"packages in the source tree but not in the wheel: {sorted(missing)}"
    modules = {
        "connectsw/" + p.relative_to(ROOT).as_posix()
        for sub in ["", *SUBPACKAGES]
        for p in (ROOT / sub).glob("*.py")
    }
    assert not modules - names, f"modules not in the wheel: {sorted(modules - names)}"

    stray = [
        n
        for n in names
        if n.split("/")[0] in NOT_PACKAGED
        or (n.startswith("connectsw/") and n.split("/")[1] in NOT_PACKAGED)
        or "__pycache__" in n
    ]
    assert not stray, f"files that must not be packaged: {stray[:10]}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "connectsw = connectsw.cli.main:main" in text


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", "--without-pip", fresh])
    python = fresh / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            wheel,
        ]
    )
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site = Path(purelib.stdout.strip())
    assert site.is_relative_to(fresh), site
    (site / "connectsw-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTSW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        CONNECTSW_DATA_DIR=str(tmp_path / "data"),
        CONNECTSW_DASK__PROCESSES="false",
        CONNECTSW_DASK__N_WORKERS="1",
        PATH=f"{fresh / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )

    def fresh_run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
        return run(list(cmd), cwd=elsewhere, env=env, stdin=subprocess.DEVNULL)

    where = fresh_run(python, "-c", "import connectsw, sys; print(connectsw.__file__)")
    installed = Path(where.stdout.strip()).resolve()
    assert installed.is_relative_to(fresh.resolve()), installed
    assert not installed.is_relative_to(ROOT), installed
    data = fresh_run(
        python,
        "-c",
        "from connectsw.conf.settings import DEFAULT_FILE; "
        "from connectsw.core.taskgraph import SCHEMA_FILE; "
        "print(DEFAULT_FILE.is_file(), SCHEMA_FILE.is_file())",
    )
    assert data.stdout.split() == ["True", "True"]

    script = fresh / "bin" / "connectsw"
    helped = fresh_run(script, "--help")
    for name in ("new", "run", "status", "approve", "resume", "plugins"):
        assert f"  {name} " in helped.stdout, helped.stdout

    infos = json.loads(fresh_run(script, "plugins", "--json").stdout)
    agents = {a for info in infos for a in info["agents"]}
    assert {"product-manager", "architect", "shell", "noop"} <= agents
    assert {g for info in infos for g in info["gates"]} >= {"tests-pass"}

    # And it runs a (tiny) graph end to end from the installed package.
    (elsewhere / "g.yaml").write_text("name: tiny\ntasks:\n  - {id: only, agent: noop}\n")
    view = json.loads(fresh_run(script, "run", "g.yaml", "--yes", "--json").stdout)
    assert view["status"] == "completed", view
