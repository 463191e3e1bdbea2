"""smoke-tests and coverage on real workspaces: the tests run, coverage.py measures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from connectsw.gates.testing import CoverageRule, SmokeTestsRule
from tests.gates.workspaces import context, write

CODE = """\
def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    result = 0
    for _ in range(b):
        result = add(result, a)
    return result


def div(a, b):
    if b == 0:
        raise ZeroDivisionError("b is 0")
    return a / b
"""

SMOKE_TESTS = """\
import unittest

import pytest

from calc import add, sub


@pytest.mark.smoke
def test_add():
    assert add(1, 2) == 3


class CalcTest(unittest.TestCase):
    def test_smoke_sub(self):
        self.assertEqual(sub(3, 1), 2)

    def test_other_and_broken(self):
        self.assertEqual(add(1, 1), 3)
"""


@pytest.fixture
def no_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if pytest were not installed for the rules (the stdlib's find_spec answers None)."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kw: Any) -> Any:
        return None if name == "pytest" else real(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_smoke_tests_all_passing_pass(ws: Path) -> None:
    write(ws, {"calc.py": CODE, "tests/test_calc.py": SMOKE_TESTS})
    result = SmokeTestsRule().evaluate(context(ws))
    # The marker and the name both count; the broken test is not a smoke test.
    assert result.passed, result.details
    assert "2 of 2 smoke tests passed" in result.details
    assert not list(ws.rglob("__pycache__"))


def test_a_failing_smoke_test_fails_the_rule(ws: Path) -> None:
    broken = SMOKE_TESTS.replace("sub(3, 1), 2", "sub(3, 1), 5")
    write(ws, {"calc.py": CODE, "tests/test_calc.py": broken})
    result = SmokeTestsRule().evaluate(context(ws))
    assert not result.passed
    assert "1 of 2 smoke tests passed (1 failed" in result.details
    assert result.score == 0.5
    assert "Every smoke test must pass" in result.remediation


def test_a_skipped_smoke_test_is_not_a_pass(ws: Path) -> None:
    skipped = SMOKE_TESTS.replace("@pytest.mark.smoke", "@pytest.mark.smoke\n@pytest.mark.skip")
    write(ws, {"calc.py": CODE, "tests/test_calc.py": skipped})
    result = SmokeTestsRule().evaluate(context(ws))
    assert not result.passed
    assert "1 skipped" in result.details


def test_no_smoke_test_fails(ws: Path) -> None:
    write(
        ws,
        {
            "calc.py": CODE,
            "test_calc.py": "from calc import add\n\ndef test_a():\n    assert add(1, 1) == 2\n",
        },
    )
    result = SmokeTestsRule().evaluate(context(ws))
    assert not result.passed
    assert "no test is marked smoke" in result.details
    assert "@pytest.mark.smoke" in result.remediation


def test_without_pytest_unittest_names_decide(ws: Path, no_pytest: None) -> None:
    unit = SMOKE_TESTS.replace("import pytest\n", "").replace("@pytest.mark.smoke\n", "")
    write(ws, {"calc.py": CODE, "tests/__init__.py": "", "tests/test_calc.py": unit})
    ok = SmokeTestsRule().evaluate(context(ws))
    assert ok.passed, ok.details
    assert "unittest -k smoke: 1 of 1 smoke tests passed" in ok.details
    write(ws, {"tests/test_calc.py": unit.replace("sub(3, 1), 2", "sub(3, 1), 9")})
    bad = SmokeTestsRule().evaluate(context(ws))
    assert not bad.passed
    assert "0 of 1 smoke tests passed (1 failed" in bad.details


def test_coverage_above_the_threshold_passes(ws: Path) -> None:
    tests = (
        "from calc import add, sub, mul, div\n\n"
        "def test_all():\n"
        "    assert add(1, 2) == 3 and sub(2, 1) == 1 and mul(2, 3) == 6 and div(4, 2) == 2\n"
    )
    write(ws, {"calc.py": CODE, "tests/test_calc.py": tests})
    result = CoverageRule().evaluate(context(ws))
    assert result.passed, result.details
    # Only the ZeroDivisionError line is not run: 12 of 13 statements.
    assert "coverage 92.3% (threshold 80%)" in result.details
    assert "calc.py: 92.3%" in result.details and "test_calc" not in result.details
    assert not (ws / ".coverage").exists()


def test_coverage_below_the_threshold_fails(ws: Path) -> None:
    tests = "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    write(ws, {"calc.py": CODE, "tests/test_calc.py": tests})
    result = CoverageRule().evaluate(context(ws))
    assert not result.passed
    percent = float(result.details.split("coverage ")[1].split("%")[0])
    assert percent < 80
    assert result.score == round(percent / 80, 3)
    assert "Raise test coverage to at least 80%" in result.remediation
    # The threshold is configurable.
    assert CoverageRule().evaluate(context(ws, coverage_threshold=percent - 1)).passed
