"""The wheel holds the whole package (code, data, console script) and nothing else.

The wheel is built from a copy of the files git tracks (so no ``build/`` or
egg-info lands in the repository, and nothing untracked, such as the output of an
old ``scripts/demo --workspace ./demo``, reaches the wheel or its checks),
installed with ``--no-deps`` into a fresh venv, and the CLI run from there. The
fresh venv sees the test venv's dependencies through a ``.pth`` line naming its
site-packages: that adds the directory to ``sys.path`` without running the
``.pth`` files in it, so the editable install of connectsw stays invisible and
only the wheel's copy can be imported.
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
    "demo",
)


def run(cmd: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


def tracked_files(root: Path) -> list[Path]:
    """The files git tracks under ``root`` (relative paths), deleted ones left out.

    Outside a git checkout (an unpacked sdist), every file but caches and build output.
    """
    proc = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--", "."],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 0 and proc.stdout:
        return [Path(p) for p in proc.stdout.split("\0") if p and (root / p).is_file()]
    return [
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and not COPY_IGNORE(str(root), list(path.relative_to(root).parts))
    ]


def copy_tracked(root: Path, dest: Path) -> Path:
    """Copy what git tracks under ``root`` to ``dest``: the source a clean clone would have."""
    for rel in tracked_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """The wheel pip builds from ``src`` (no dependencies, no build isolation).

    setuptools builds it without warning that a data folder (prompts, templates) looks
    like a package missing from pyproject's ``packages`` (``-v`` shows its warnings)."""
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            out,
            src,
        ]
    )
    absent = [
        line.strip()
        for line in (built.stdout + built.stderr).splitlines()
        if "is absent from the `packages` configuration" in line
    ]
    assert not absent, "\n".join(absent)
    wheels = list(out.glob("connectsw-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from (a copy of the tracked files of) the repository."""
    base = tmp_path_factory.mktemp("wheel")
    return build_wheel(copy_tracked(ROOT, base / "src"), base / "out")


def source_packages(root: Path = ROOT) -> set[str]:
    """Every tracked directory with an ``__init__.py`` (outside tests etc.)."""
    found = set()
    for rel_init in tracked_files(root):
        if rel_init.name != "__init__.py":
            continue
        rel = rel_init.parent
        if rel.parts and (rel.parts[0] in NOT_PACKAGED or rel.parts[0].startswith(".")):
            continue
        found.add("/".join(("connectsw", *rel.parts)))
    return found


def test_untracked_files_never_reach_the_wheel_or_its_checks(tmp_path: Path) -> None:
    """``scripts/demo --workspace ./demo`` left ``demo/service/__init__.py`` in the tree."""
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, clone])
    stray = clone / "demo" / "service" / "__init__.py"
    stray.parent.mkdir(parents=True)
    stray.write_text("")
    (clone / "stray_module.py").write_text("")
    assert "connectsw/demo/service" not in source_packages(clone)
    # (package-dir is ".": pip building the dirty clone itself would take stray_module.py.)
    src = copy_tracked(clone, tmp_path / "src")
    names = zipfile.ZipFile(build_wheel(src, tmp_path / "out")).namelist()
    assert not [n for n in names if n.startswith(("connectsw/demo/", "connectsw/stray_module"))]


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
    tracked = {p.as_posix() for p in tracked_files(ROOT)}
    modules = {
        f"connectsw/{p}"
        for p in tracked
        if p.endswith(".py") and (p.rpartition("/")[0] in ["", *SUBPACKAGES])
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
    assert "[pytest11]\nconnectsw = connectsw.testing" in text  # plugin authors' fixtures
    templates = {f"connectsw/{p}" for p in tracked if p.startswith("plugins/templates/")}
    assert templates and not templates - names, f"templates not in the wheel: {templates - names}"


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

    # `plugin new` finds its templates in the installed package.
    made = json.loads(fresh_run(script, "plugin", "new", "demo-agent", "--json").stdout)
    assert (Path(made["directory"]) / "connectsw_demo_agent.py").is_file()
