"""Graph fields are strict: a quoted number is not a number (found by the new-user trial).

``timeout: "5"`` and ``retries: "2"`` were accepted (pydantic's lax coercion); they
are refused with the field's path and line, as other graph errors are. Settings
from environment variables are strings by nature and stay lax.
"""

from __future__ import annotations

import json

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

TASK = "name: x\ntasks:\n  - id: a\n    agent: noop\n"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ('timeout: "5"', "line 5: tasks.0.timeout: Input should be a valid number"),
        ('retries: "2"', "line 5: tasks.0.retries: Input should be a valid integer"),
        ("title: 5", "line 5: tasks.0.title: Input should be a valid string"),
        ("needs: [1]", "line 5: tasks.0.needs.0: Input should be a valid string"),
    ],
)
def test_a_quoted_number_in_a_yaml_graph_is_refused_with_its_line(
    cli: Cli, field: str, expected: str
) -> None:
    (cli.cwd / "g.yaml").write_text(TASK + f"    {field}\n")
    res = cli("run", "g.yaml", "--plan-only")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert res.error_line() == f"Error: {cli.cwd / 'g.yaml'}: {expected}"


def test_a_quoted_number_in_a_json_graph_is_refused_with_its_line(cli: Cli) -> None:
    (cli.cwd / "g.json").write_text(
        '{"name": "x",\n "tasks": [{"id": "a", "agent": "noop"},\n'
        '  {"id": "b", "agent": "noop",\n   "retries": "2"}]}\n'
    )
    res = cli("run", "g.json", "--plan-only")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "g.json: line 4: tasks.1.retries: Input should be a valid integer" in res.error_line()


def test_numbers_as_numbers_are_accepted(cli: Cli) -> None:
    (cli.cwd / "g.yaml").write_text(TASK + "    timeout: 5\n    retries: 2\n")
    res = cli("run", "g.yaml", "--plan-only", "--json", ok=True)
    task = res.json()["plan"]["tasks"][0]
    assert (task["timeout"], task["retries"]) == (5.0, 2)


def test_settings_from_the_environment_stay_lax(cli: Cli) -> None:
    (cli.cwd / "g.yaml").write_text(TASK)
    cli.env["CONNECTSW_ENGINE__DEFAULT_RETRIES"] = "2"
    cli.env["CONNECTSW_ENGINE__DEFAULT_TIMEOUT"] = "5"
    res = cli("run", "g.yaml", "--plan-only", "--json", ok=True)
    assert json.loads(res.stdout)["plan"]["name"] == "x"
