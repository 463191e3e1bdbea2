"""Install-free plugin fixtures: a folder with the fixture's module and a dist-info.

``importlib.metadata`` finds a distribution through any ``NAME-VERSION.dist-info``
folder on ``sys.path``; writing one from the fixture's ``pyproject.toml`` gives the
same entry points as ``pip install`` without a build (milliseconds instead of
seconds), so these tests need no ``slow`` mark.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# The fixture distributions' own tests run against the installed distribution, in a
# process of their own (test_sample_plugin.py), never in this session.
collect_ignore_glob = ["*-plugin/tests/*"]


def write_site(target: Path, *fixtures: str) -> Path:
    """Copy each fixture distribution's modules to ``target`` with a dist-info folder."""
    target.mkdir(parents=True, exist_ok=True)
    for fixture in fixtures:
        source = HERE / fixture
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
        modules = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"][
            "py-modules"
        ]
        name, version = project["name"], project["version"]
        info = target / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        groups = project.get("entry-points", {})
        (info / "entry_points.txt").write_text(
            "".join(
                f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
                for group, eps in groups.items()
            ),
            encoding="utf-8",
        )
        for module in modules:
            shutil.copy(source / f"{module}.py", target / f"{module}.py")
    return target


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """``plugin_site("broken-plugin", ...)``: a site folder put first on ``sys.path``."""
    before = set(sys.modules)
    count = 0

    def make(*fixtures: str, on_path: bool = True) -> Path:
        nonlocal count
        count += 1
        site = write_site(tmp_path / f"site{count}", *fixtures)
        if on_path:
            monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for name in set(sys.modules) - before:  # the next test must not see the fixtures
        if name.startswith("connectsw_"):
            sys.modules.pop(name, None)
