"""Broken symbolic links and quoted numbers are named, never followed or coerced in silence.

Found by the new-user trial: ``-w LINK`` (a link whose target was moved) made the
execution's workspace the link's target, created there; a shell task whose declared
output is a broken link failed with "command did not write declared output" (it
did write it: a link); one that links outside the workspace read "path ... is outside
the workspace", without saying it is a link. A plugin agent's ``with`` field
declared ``int`` took ``count: "5"`` as 5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

GRAPH = "name: x\ntasks:\n  - id: a\n    agent: noop\n"
LINKED_OUTPUT = (
    "name: s\ntasks:\n  - id: a\n    agent: shell\n    with:\n"
    "      command: 'ln -s {target} out.txt'\n      outputs: [out.txt]\n"
)


@pytest.mark.parametrize("where", ["itself", "a parent"])
@pytest.mark.parametrize("command", [["run", "g.yaml"], ["new", "product", "x"]])
def test_a_workspace_through_a_broken_link_is_refused(
    cli: Cli, tmp_path: Path, where: str, command: list[str]
) -> None:
    (cli.cwd / "g.yaml").write_text(GRAPH)
    link = tmp_path / "moved"
    link.symlink_to(tmp_path / "gone")
    workspace = link if where == "itself" else link / "ws"
    res = cli(*command, "-w", workspace, "--yes")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert res.error_line() == (
        f"Error: workspace {workspace}: {link} is a broken symbolic link to {tmp_path / 'gone'}"
    )
    assert not (tmp_path / "gone").exists()  # nothing was created at the link's target
    assert "No executions yet." in cli("status", ok=True).stdout


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("missing.txt", "declared output 'out.txt' is a broken symbolic link to missing.txt"),
        (
            "/etc/hostname",
            "declared output 'out.txt' is a symbolic link to /etc/hostname, outside the workspace",
        ),
    ],
    ids=["broken", "outside"],
)
def test_a_declared_output_that_is_a_link_says_so(cli: Cli, target: str, expected: str) -> None:
    (cli.cwd / "s.yaml").write_text(LINKED_OUTPUT.format(target=target))
    res = cli("run", "s.yaml", "-w", "ws", "--json")
    assert res.returncode == ExitCode.FAILED, res
    assert res.json()["error"] == f"task 'a' failed: {expected}"


COUNTER = """
from connectsw import hookimpl
from connectsw.agents.base import Agent, AgentInput, AgentOutput
from pathlib import Path


class CounterInput(AgentInput):
    count: int = 1
    ratio: float = 1.0
    flag: bool = False
    out: Path = Path("out.txt")


class Counter(Agent):
    name = "counter"
    isolation = "thread"
    input_model = CounterInput

    def run(self, ctx):
        return AgentOutput()


@hookimpl
def register_agents(register):
    register(Counter())
"""


@pytest.fixture
def counter(cli: Cli, tmp_path: Path) -> Cli:
    """A plugin whose agent's ``with`` has typed fields, installed as a distribution."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "connectsw_counter.py").write_text(COUNTER)
    info = site / "connectsw_counter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: connectsw-counter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[connectsw]\ncounter = connectsw_counter\n")
    cli.env["PYTHONPATH"] = str(site)
    return cli


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('count: "5"', "with.count: Input should be a valid integer"),
        ('ratio: "0.5"', "with.ratio: Input should be a valid number"),
        ('flag: "yes"', "with.flag: Input should be a valid boolean"),
        ("count: 2.5", "with.count: Input should be a valid integer"),
    ],
)
def test_a_plugin_agent_s_with_fields_are_strict(counter: Cli, value: str, expected: str) -> None:
    (counter.cwd / "g.yaml").write_text(
        f"name: x\ntasks:\n  - id: a\n    agent: counter\n    with: {{{value}}}\n"
    )
    res = counter("run", "g.yaml", "--plan-only")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    graph = counter.cwd / "g.yaml"
    assert res.error_line() == f"Error: {graph}: task 'a' (counter): {expected}"


def test_json_values_of_the_right_type_are_accepted(counter: Cli) -> None:
    """Strict as JSON is: a whole number is a float, text is a path."""
    (counter.cwd / "g.yaml").write_text(
        "name: x\ntasks:\n  - id: a\n    agent: counter\n"
        "    with: {count: 5, ratio: 2, flag: true, out: docs/x.txt}\n"
    )
    counter("run", "g.yaml", "--plan-only", ok=True)
