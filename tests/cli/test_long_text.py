"""Long or markup-like text is bounded and rendered in linear time (new-user trial).

A 100 KB title made ``--plan-only`` take minutes (rich's highlighter is quadratic in
a long unbroken word); a title such as ``[/x]`` was read as rich markup and ended
in a traceback. A request description has a documented maximum length.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode
from connectsw.core.models import MAX_USER_TEXT
from connectsw.core.planner import MAX_REQUEST_TEXT

from .conftest import CHECKPOINT_GRAPH, Cli


def graph_with_title(title: str) -> str:
    return f"name: x\ntasks:\n  - id: a\n    agent: noop\n    title: '{title}'\n"


def test_a_100kb_title_renders_in_linear_time(cli: Cli) -> None:
    (cli.cwd / "g.yaml").write_text(graph_with_title("x" * 100_000))
    start = time.monotonic()
    res = cli("run", "g.yaml", "--plan-only", timeout=60)
    assert res.returncode == 0, res
    assert time.monotonic() - start < 15
    assert "x" * 1000 in res.stdout.replace("\n", "")


@pytest.mark.parametrize("title", ["[/x] closes nothing", "[bold]not bold[/bold]", "a\\[b"])
def test_markup_in_user_text_is_shown_as_written(cli: Cli, title: str) -> None:
    (cli.cwd / "g.yaml").write_text(graph_with_title(title))
    res = cli("run", "g.yaml", "--plan-only", ok=True)
    assert title in res.stdout, res


def test_markup_in_an_error_message_is_shown_as_written(cli: Cli) -> None:
    res = cli("run", "[/x].yaml", "--plan-only")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "[/x].yaml: not found" in res.error_line()


@pytest.mark.parametrize("command", [["new", "product"], ["new", "feature"], ["fix"]])
def test_a_description_over_the_maximum_is_refused(cli: Cli, command: list[str]) -> None:
    text = "word " * (MAX_REQUEST_TEXT // 5) + "x"
    start = time.monotonic()
    res = cli(*command, text, "--plan-only", "-w", "ws")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert f"{MAX_REQUEST_TEXT + 1} characters long; at most {MAX_REQUEST_TEXT}" in line
    assert "word word" not in line
    assert time.monotonic() - start < 15


def test_a_description_at_the_maximum_is_planned(cli: Cli) -> None:
    cli("new", "feature", "y" * MAX_REQUEST_TEXT, "--plan-only", "-w", "ws", ok=True)


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("request-changes", "--feedback"),
        ("approve", "--feedback"),
        ("cancel", "--reason"),
    ],
)
def test_feedback_and_reasons_over_the_maximum_are_refused(
    cli: Cli, command: str, option: str
) -> None:
    """Found by the new-user trial: feedback had no bound (the API's was 10,000), and a
    few long rounds of it later stopped every shell task from starting."""
    (cli.cwd / "g.yaml").write_text(CHECKPOINT_GRAPH)
    eid = cli("run", "g.yaml", "-w", "ws", ok=True).execution_id
    res = cli(
        command,
        eid,
        option,
        "z" * (MAX_USER_TEXT + 1),
        "--no-run" if command != "cancel" else "--json",
    )
    assert res.returncode == ExitCode.INVALID_INPUT, res
    what = option.removeprefix("--")
    assert res.error_line() == (
        f"Error: the {what} is {MAX_USER_TEXT + 1} characters long; at most {MAX_USER_TEXT}"
        " are allowed"
    )
    assert "awaiting" in cli("status", eid, "--no-resume", ok=True).stdout  # nothing decided
    cli(
        command,
        eid,
        option,
        "z" * MAX_USER_TEXT,
        *(["--no-run"] if command != "cancel" else []),
        ok=True,
    )


BIG_ERROR = """
from connectsw import hookimpl
from connectsw.agents.base import Agent
from connectsw.core.errors import TaskError


class BigError(Agent):
    name = "bigerr"
    description = "Fails with a 5 MB error."

    def run(self, ctx):
        raise TaskError("E" * 5_000_000)


class BigErrorThread(BigError):
    name = "bigerr-thread"
    isolation = "thread"


@hookimpl
def register_agents(register):
    register(BigError())
    register(BigErrorThread())
"""


@pytest.mark.parametrize("agent", ["bigerr", "bigerr-thread"])
def test_an_agents_huge_error_is_stored_and_shown_bounded(
    cli: Cli, tmp_path: Path, agent: str
) -> None:
    """Trial 8b, F7: a 15 MB TaskError was printed as 15 MB (556 MB RSS), stored whole
    (105 MB store), and printed whole again by ``status ID``."""
    from .test_plugin_output import site

    plugin = site(tmp_path / "site", "bigerr", BIG_ERROR)
    cli.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p
    )
    (cli.cwd / "g.yaml").write_text(
        f"name: be\ntasks:\n  - {{id: x, agent: {agent}}}\n  - {{id: y, agent: noop}}\n"
    )
    res = cli("run", "g.yaml", "-w", "ws", "--yes")
    assert res.returncode == ExitCode.FAILED, str(res)[:5000]
    bound = 8 * 1024
    assert len(res.stdout) + len(res.stderr) < bound, (len(res.stdout), len(res.stderr))
    assert "EEEE" in res.stdout + res.stderr
    eid = res.execution_id
    view = cli.view(eid)
    assert len(view["error"]) < bound
    assert view["error"].startswith("task 'x' failed: EEEE")
    status = cli("status", eid, "--no-resume")
    assert len(status.stdout) + len(status.stderr) < bound, len(status.stdout)
    events = cli.events(eid)
    assert all(len(json.dumps(e)) < bound for e in events)
    data = Path(cli.env["CONNECTSW_DATA_DIR"])
    stored = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    assert stored < 4_000_000, stored  # the 5 MB error is not stored (once or more)
