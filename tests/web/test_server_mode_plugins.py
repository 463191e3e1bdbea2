"""Server mode with a plugin workflow: ``connectsw release v1.2`` and a plugin's own
command (the public :func:`connectsw.submission.submit`) submit to the server, which
plans with the workflow (the plugin is installed on both sides), as in local mode.

The release plugin (tests/plugins/release-plugin) is pip-installed once for this module.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .serving import Served, run_cli, start_server

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).parents[1] / "plugins" / "release-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("release")
    shutil.copytree(PLUGIN, work / "src")
    target = work / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--disable-pip-version-check", "--no-cache-dir"),
            *("--target", str(target), str(work / "src")),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return target


@pytest.fixture(scope="module")
def served(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_server(tmp_path_factory.mktemp("server") / "data", PYTHONPATH=str(site))
    yield server
    server.stop()


def test_plugin_workflow_and_plugin_command_through_the_server(
    served: Served, site: Path, tmp_path: Path
) -> None:
    client, work = tmp_path / "client", tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(site)}
    key = served.issue()
    login = run_cli(["login", "--server", served.url, "--key", key], client, work, **env)
    assert login.returncode == 0, login.stderr

    out = run_cli(["release", "v1.2", "--yes", "--json"], client, work, **env)
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["status"] == "completed"
    assert (view["command"], view["title"]) == ("release", "v1.2")
    assert view["tasks"] == {"changelog": "succeeded", "tag": "succeeded"}

    notes = run_cli(["release-notes", "v2.0"], client, work, **env)
    assert notes.returncode == 0, notes.stderr
    execution_id = re.findall(r"release execution (\S+)", notes.stdout)[-1]
    status = run_cli(["status", execution_id, "--json"], client, work, **env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["status"] == "completed" and shown["command"] == "release"
