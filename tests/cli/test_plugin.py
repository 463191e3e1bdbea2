"""``connectsw plugin new``: a plugin distribution that installs and passes its own tests.

The done-when of issue 9's kit: from an empty directory, ``plugin new my-agent``,
``pip install ./my-agent`` (into a target folder), its generated tests pass,
``connectsw plugins`` lists it and a task graph that uses it runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Cli

RunTests = Callable[[Path, Path], subprocess.CompletedProcess[str]]


def new_plugin(cli: Cli, where: Path, name: str, kind: str) -> dict[str, object]:
    where.mkdir(parents=True, exist_ok=True)
    cli.cwd = where
    made = cli("plugin", "new", name, "--kind", kind, "--json", ok=True).json()
    assert isinstance(made, dict)
    return made


@pytest.mark.slow
def test_new_agent_plugin_installs_tests_lists_and_runs(
    cli: Cli, tmp_path: Path, pip_install: Callable[[Path], Path], run_plugin_tests: RunTests
) -> None:
    empty = tmp_path / "authoring"
    empty.mkdir()
    cli.cwd = empty
    out = cli("plugin", "new", "my-agent", ok=True)
    assert "connectsw-my-agent" in out.stdout
    plugin = empty / "my-agent"
    assert sorted(p.relative_to(plugin).as_posix() for p in plugin.rglob("*") if p.is_file()) == [
        "README.md",
        "connectsw_my_agent.py",
        "pyproject.toml",
        "tests/test_connectsw_my_agent.py",
    ]

    site = pip_install(plugin)
    assert list(site.glob("connectsw_my_agent-0.1.0.dist-info"))
    tests = run_plugin_tests(site.parent / "src", site)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout, tests.stdout

    cli.env["PYTHONPATH"] = str(site)
    infos = {i["name"]: i for i in cli("plugins", "--json", ok=True).json()}
    assert infos["my-agent"]["status"] == "loaded"
    assert infos["my-agent"]["agents"] == ["my-agent"]
    assert "my-agent" in cli("plugins", ok=True).stdout

    project = tmp_path / "project"
    project.mkdir()
    cli.cwd = project
    (project / "graph.yaml").write_text(
        "name: uses-my-agent\ntasks:\n"
        "  - id: hello\n    agent: my-agent\n    with: {text: Hello, output: hello.md}\n"
    )
    ran = cli("run", "graph.yaml", "--json", ok=True)
    assert ran.json()["status"] == "completed", ran
    assert (project / "hello.md").read_text() == "Hello\n"
    log = subprocess.run(
        ["git", "log", "--format=%s", "--", "hello.md"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "hello" in log.stdout  # one commit naming the task


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "name", "count"), [("gate", "readme-check", 4), ("workflow", "release", 4)]
)
def test_gate_and_workflow_plugins_pass_their_tests(
    cli: Cli,
    tmp_path: Path,
    pip_install: Callable[[Path], Path],
    run_plugin_tests: RunTests,
    kind: str,
    name: str,
    count: int,
) -> None:
    made = new_plugin(cli, tmp_path / "authoring", name, kind)
    assert made["entry_point"] == f"{name} = connectsw_{name.replace('-', '_')}"
    site = pip_install(Path(str(made["directory"])))
    tests = run_plugin_tests(site.parent / "src", site)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert f"{count} passed" in tests.stdout, tests.stdout
    cli.env["PYTHONPATH"] = str(site)
    infos = {i["name"]: i for i in cli("plugins", "--json", ok=True).json()}
    assert infos[name]["status"] == "loaded"
    assert infos[name]["gates" if kind == "gate" else "workflows"] == [name]


def test_generated_files(cli: Cli, tmp_path: Path) -> None:
    made = new_plugin(cli, tmp_path, "word-count", "agent")
    root = Path(str(made["directory"]))
    assert root == (tmp_path / "word-count").resolve()
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.connectsw]\nword-count = "connectsw_word_count"' in pyproject
    assert 'name = "connectsw-word-count"' in pyproject
    module = (root / "connectsw_word_count.py").read_text()
    assert "class WordCount(Agent):" in module and "$" not in module
    compile(module, "connectsw_word_count.py", "exec")
    tests = (root / "tests/test_connectsw_word_count.py").read_text()
    assert "from connectsw_word_count import WordCount" in tests
    compile(tests, "test.py", "exec")
    assert "pip install" in (root / "README.md").read_text()


def test_directory_option_and_an_empty_existing_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    cli("plugin", "new", "lint-rule", "--kind", "gate", "--directory", "here", ok=True)
    assert (tmp_path / "here" / "connectsw_lint_rule.py").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["My_Agent"], "invalid plugin name 'My_Agent': lowercase letters and digits"),
        (["-x"], "No such option"),
        (["a" * 41], "at most 40 characters"),
        (["agent"], "its class Agent would hide Python's or connectsw's Agent"),
        (["none"], "its class None would hide"),
        (["any"], "its class Any would hide"),
        (["shell"], "already registers an agent called 'shell'"),
        (["tests-pass", "--kind", "gate"], "already registers a gate rule called 'tests-pass'"),
        (["x", "--kind", "nope"], "Invalid value for '--kind'"),
        (["status", "--kind", "workflow"], "`connectsw status` is already a command"),
    ],
)
def test_refuses_bad_names(cli: Cli, args: list[str], message: str) -> None:
    res = cli("plugin", "new", *args)
    assert res.returncode == 2, res
    assert message in res.stderr, res
    assert "Traceback" not in res.stderr


def test_refuses_a_directory_that_is_not_empty(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "my-agent").mkdir()
    (tmp_path / "my-agent" / "keep.txt").write_text("mine")
    line = cli("plugin", "new", "my-agent").error_line()
    assert line == "Error: my-agent already exists and is not empty: choose another --directory"
    assert [p.name for p in (tmp_path / "my-agent").iterdir()] == ["keep.txt"]
