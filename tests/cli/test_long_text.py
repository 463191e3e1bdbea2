"""Long or markup-like text is bounded and rendered in linear time (new-user trial).

A 100 KB title made ``--plan-only`` take minutes (rich's highlighter is quadratic in
a long unbroken word); a title such as ``[/x]`` was read as rich markup and ended
in a traceback. A request description has a documented maximum length.
"""

from __future__ import annotations

import time

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
