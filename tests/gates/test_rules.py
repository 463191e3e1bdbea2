"""The built-in tests-pass rule."""

from __future__ import annotations

import importlib.util
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectsw.core.models import Execution, Plan, Request, Stage, TaskSpec
from connectsw.gates import rules
from connectsw.gates.base import GateContext
from connectsw.gates.rules import TAIL_LINES, TestsPassRule, find_tests

PASSING = """\
import unittest


class Good(unittest.TestCase):
    def test_adds(self):
        self.assertEqual(1 + 1, 2)
"""

FAILING = """\
import unittest


class Bad(unittest.TestCase):
    def test_one(self):
        self.assertEqual("expected-value", "actual-value")

    def test_two(self):
        self.assertTrue(True)
"""

PY = shlex.quote(sys.executable)


def context(workspace: Path, **config: Any) -> GateContext:
    stage = Stage(index=0, name="s", task_ids=["a"], gates=["tests-pass"])
    plan = Plan(name="p", workflow="test", tasks=[TaskSpec(id="a", agent="noop")], stages=[stage])
    execution = Execution(request=Request(command="run"), plan=plan, workspace=str(workspace))
    return GateContext(execution=execution, stage=stage, workspace=workspace, config=config)


@pytest.fixture
def rule() -> TestsPassRule:
    return TestsPassRule()


@pytest.fixture
def no_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if pytest were not installed: the rule falls back to unittest discovery."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kw: Any) -> Any:
        return None if name == "pytest" else real(name, *args, **kw)

    monkeypatch.setattr(rules.importlib.util, "find_spec", find_spec)


def test_find_tests(tmp_path: Path) -> None:
    assert not find_tests(tmp_path)
    (tmp_path / "app.py").write_text("")
    (tmp_path / "tests.txt").write_text("")
    assert not find_tests(tmp_path)
    for skipped in (".venv", "node_modules", ".git"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "test_dep.py").write_text("")
    assert not find_tests(tmp_path)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "api_test.py").write_text("")
    assert find_tests(tmp_path)


def test_not_applicable_without_tests(tmp_path: Path, rule: TestsPassRule) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    assert not rule.applies(context(tmp_path))
    (tmp_path / "test_app.py").write_text(PASSING)
    assert rule.applies(context(tmp_path))


def test_configured_command_applies_without_test_files(tmp_path: Path, rule: TestsPassRule) -> None:
    assert rule.applies(context(tmp_path, test_command="make test"))


def test_passing_unittest_suite_passes(tmp_path: Path, rule: TestsPassRule) -> None:
    (tmp_path / "test_good.py").write_text(PASSING)
    result = rule.evaluate(context(tmp_path))
    assert result.passed, result.details
    assert result.rule == "tests-pass"
    assert result.score == 1.0
    assert result.remediation == ""
    assert result.details.startswith("$ ")


def test_passing_suite_with_unittest_fallback(
    tmp_path: Path, rule: TestsPassRule, no_pytest: None
) -> None:
    (tmp_path / "test_good.py").write_text(PASSING)
    ctx = context(tmp_path)
    assert rule._command(ctx)[1:3] == ["-m", "unittest"]
    result = rule.evaluate(ctx)
    assert result.passed, result.details
    assert "-m unittest discover" in result.details.splitlines()[0]
    assert "OK" in result.details


PYTEST_STYLE = "def test_x():\n    assert False, 'this test fails'\n"


@pytest.mark.parametrize("body", [PYTEST_STYLE, "import os\n"], ids=["pytest-style", "no-test"])
def test_test_files_where_unittest_finds_no_test_do_not_pass(
    tmp_path: Path, rule: TestsPassRule, no_pytest: None, body: str
) -> None:
    """unittest exits 0 on "Ran 0 tests" (Python 3.11): no test ran is not a pass
    (trial 7: a failing pytest-style test passed the gate)."""
    (tmp_path / "test_a.py").write_text(body)
    result = rule.evaluate(context(tmp_path))
    assert not result.passed and result.score == 0.0
    assert "no test ran: unittest found no test case" in result.details
    assert "gates.test_command" in result.remediation


def test_test_files_where_pytest_collects_no_test_do_not_pass(
    tmp_path: Path, rule: TestsPassRule
) -> None:
    (tmp_path / "test_a.py").write_text("import os\n")
    result = rule.evaluate(context(tmp_path))
    assert not result.passed
    assert "no test ran: pytest collected no test" in result.details


def test_failing_suite_fails_with_remediation_and_tail(
    tmp_path: Path, rule: TestsPassRule, no_pytest: None
) -> None:
    (tmp_path / "test_bad.py").write_text(FAILING)
    result = rule.evaluate(context(tmp_path))
    assert not result.passed
    assert result.score == 0.0
    assert result.remediation.startswith("Fix the failing tests")
    lines = result.details.splitlines()
    assert lines[0].startswith("$ ")
    assert len(lines) <= TAIL_LINES + 1
    assert "FAILED (failures=1)" in result.details  # the end of the output is kept


def test_failing_suite_with_pytest(tmp_path: Path, rule: TestsPassRule) -> None:
    (tmp_path / "test_bad.py").write_text(FAILING)
    result = rule.evaluate(context(tmp_path))
    assert not result.passed
    assert "-m pytest" in result.details.splitlines()[0]
    assert "1 failed, 1 passed" in result.details


def test_tail_is_limited(tmp_path: Path, rule: TestsPassRule) -> None:
    cmd = f"{PY} -c \"[print(f'line {{i}}') for i in range(100)]\""
    result = rule.evaluate(context(tmp_path, test_command=cmd))
    lines = result.details.splitlines()
    assert len(lines) == TAIL_LINES + 1
    assert lines[-1] == "line 99"
    assert lines[1] == f"line {100 - TAIL_LINES}"


def test_configured_test_command_is_used(tmp_path: Path, rule: TestsPassRule) -> None:
    (tmp_path / "test_bad.py").write_text(FAILING)  # would fail if discovery ran
    cmd = f"{PY} -c \"import os; print('custom runner in', os.getcwd())\""
    result = rule.evaluate(context(tmp_path, test_command=cmd))
    assert result.passed, result.details
    assert f"custom runner in {tmp_path}" in result.details
    assert result.details.splitlines()[0] == "$ " + " ".join(
        shlex.quote(c) for c in shlex.split(cmd)
    )


def test_configured_failing_command_fails(tmp_path: Path, rule: TestsPassRule) -> None:
    cmd = f"{PY} -c \"import sys; print('3 broken'); sys.exit(3)\""
    result = rule.evaluate(context(tmp_path, test_command=cmd))
    assert not result.passed
    assert "3 broken" in result.details
    assert result.remediation


def test_timeout_fails(tmp_path: Path, rule: TestsPassRule) -> None:
    cmd = f'{PY} -c "import time; time.sleep(10)"'
    result = rule.evaluate(context(tmp_path, test_command=cmd, test_timeout=0.3))
    assert not result.passed
    assert "timed out after 0.3s" in result.details
    assert "timeout" in result.remediation


def test_command_that_cannot_run_fails(tmp_path: Path, rule: TestsPassRule) -> None:
    result = rule.evaluate(context(tmp_path, test_command="/no/such/test-runner --all"))
    assert not result.passed
    assert "cannot run /no/such/test-runner --all" in result.details
    assert "gates.test_command" in result.remediation


def test_timeout_ends_the_whole_test_command(tmp_path: Path, rule: TestsPassRule) -> None:
    # Issue 5, fault 1: only the runner was killed; what it started kept running.
    cmd = "sh -c '(sleep 1; touch late.txt) & sleep 10'"
    result = rule.evaluate(context(tmp_path, test_command=cmd, test_timeout=0.3))
    assert not result.passed
    assert "timed out after 0.3s" in result.details
    time.sleep(1.4)
    assert not (tmp_path / "late.txt").exists()


def test_invalid_utf8_output_does_not_break_the_rule(tmp_path: Path, rule: TestsPassRule) -> None:
    result = rule.evaluate(context(tmp_path, test_command="printf 'bad \\377 byte'"))
    assert result.passed
    assert result.details.splitlines()[-1] == "bad \ufffd byte"


def test_test_command_gets_no_engine_credentials(
    tmp_path: Path, rule: TestsPassRule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    cmd = f"{PY} -c \"import os, sys; sys.exit('PGPASSWORD' in os.environ)\""
    assert rule.evaluate(context(tmp_path, test_command=cmd)).passed
