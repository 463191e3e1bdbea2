"""Rules that run the workspace's tests: smoke tests (100 % pass) and coverage (reference §2.3).

Tests run with this interpreter (pytest; coverage.py for coverage), in the
workspace, under the supervisor with ``gates.test_timeout``. Bytecode caches go
to a temporary folder, not into the workspace.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from connectsw.core import supervisor
from connectsw.core.models import RuleResult
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.process import run_step, tail
from connectsw.gates.rules import NO_TESTS

DEFAULT_TIMEOUT = 600.0
DEFAULT_THRESHOLD = 80.0
#: Files coverage leaves out: the tests themselves (reference: ``*.spec.ts``, ``*.test.ts``).
OMIT = (
    "*/tests/*",
    "tests/*",
    "*/test_*.py",
    "test_*.py",
    "*_test.py",
    "*/conftest.py",
    "setup.py",
)


def _env(ctx: GateContext, tmp: str) -> dict[str, str]:
    extra = {
        "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
        "COVERAGE_FILE": str(Path(tmp) / "cov"),
    }
    if not ctx.config.get("pytest_plugins", False):
        # Plugins installed beside ConnectSW (hypothesis, schemathesis, ...) cost seconds
        # per run and are not the workspace's.
        extra["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return supervisor.agent_env(extra)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class SmokeTestsRule(GateRule):
    """Every test marked smoke passes: pytest's ``smoke`` marker or "smoke" in the test's
    name (``pytest -k smoke``); without pytest, unittest tests with "smoke" in their names."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    name = "smoke-tests"
    description = (
        "All tests marked smoke pass, 100 % (pytest -k smoke: the smoke marker or 'smoke' "
        "in the test's name; unittest -k smoke without pytest); no smoke test is a failure."
    )
    applies_to = ("tests",)

    def evaluate(self, ctx: GateContext) -> RuleResult:
        timeout = float(ctx.config.get("test_timeout", DEFAULT_TIMEOUT))
        if not _has("pytest"):
            return self._unittest(ctx, timeout)
        with tempfile.TemporaryDirectory(prefix="connectsw-smoke-") as tmp:
            report = Path(tmp) / "smoke.xml"
            argv = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::pytest.PytestUnknownMarkWarning",
                "-k",
                "smoke",
                f"--junitxml={report}",
            ]
            outcome, why = run_step(ctx, argv, timeout, env=_env(ctx, tmp))
            if outcome is None:
                return self.failed(why, "Make the smoke tests finish within gates.test_timeout.")
            if outcome.returncode == NO_TESTS:
                return self.failed(
                    "no test is marked smoke (pytest -k smoke selected none)",
                    "Mark the tests that show the product works end to end as smoke tests "
                    "(@pytest.mark.smoke, or 'smoke' in the test's name).",
                )
            counts = _junit_counts(report)
        if counts is None:
            return self.failed(
                f"exit {outcome.returncode}, no test report\n{tail(outcome.output)}",
                "Make the smoke tests importable and runnable with pytest.",
            )
        return self._judge("pytest -k smoke", counts, outcome.output)

    def _unittest(self, ctx: GateContext, timeout: float) -> RuleResult:
        """Without pytest: unittest discovery of the tests with "smoke" in their names."""
        with tempfile.TemporaryDirectory(prefix="connectsw-smoke-") as tmp:
            argv = [sys.executable, "-m", "unittest", "discover", "-s", ".", "-t", "."]
            outcome, why = run_step(ctx, [*argv, "-k", "smoke"], timeout, env=_env(ctx, tmp))
        if outcome is None:
            return self.failed(why, "Make the smoke tests finish within gates.test_timeout.")
        text = outcome.output
        ran = re.search(r"^Ran (\d+) tests? in", text, re.MULTILINE)
        if ran is None:
            return self.failed(
                f"exit {outcome.returncode}, no test summary\n{tail(text)}",
                "Make the smoke tests importable and runnable with unittest.",
            )
        if int(ran.group(1)) == 0:
            return self.failed(
                "no test is marked smoke (unittest -k smoke ran none)",
                "Name the tests that show the product works end to end test_smoke_*.",
            )

        def count(key: str) -> int:
            found = re.search(rf"\b{key}=(\d+)", text)
            return int(found.group(1)) if found else 0

        counts = (int(ran.group(1)), count("failures"), count("errors"), count("skipped"))
        return self._judge("unittest -k smoke", counts, text)

    def _judge(self, how: str, counts: tuple[int, int, int, int], output: str) -> RuleResult:
        total, failed, errors, skipped = counts
        passed = total - failed - errors - skipped
        evidence = (
            f"$ {how}: {passed} of {total} smoke tests passed"
            f" ({failed} failed, {errors} errors, {skipped} skipped)\n{tail(output)}"
        )
        if total == 0 or passed != total:
            return self.failed(
                evidence,
                "Every smoke test must pass (skipped ones count as not passed): fix the "
                "failures shown.",
                score=passed / total if total else 0.0,
            )
        return self.passed(evidence)


def _junit_counts(path: Path) -> tuple[int, int, int, int] | None:
    """(tests, failures, errors, skipped) summed over a JUnit XML report's suites."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = [0, 0, 0, 0]
    for suite in suites:
        for i, key in enumerate(("tests", "failures", "errors", "skipped")):
            totals[i] += int(suite.get(key, "0") or 0)
    return totals[0], totals[1], totals[2], totals[3]


class CoverageRule(GateRule):
    """The tests cover at least ``gates.coverage_threshold`` % of the code (coverage.py)."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    name = "coverage"
    description = (
        "The tests cover at least gates.coverage_threshold % (default 80) of the Python "
        "code, tests excluded (coverage.py)."
    )
    applies_to = ("tests",)

    def evaluate(self, ctx: GateContext) -> RuleResult:
        if not _has("coverage"):
            return self.not_run("coverage not installed", "Install coverage.py.")
        threshold = float(ctx.config.get("coverage_threshold", DEFAULT_THRESHOLD))
        timeout = float(ctx.config.get("test_timeout", DEFAULT_TIMEOUT))
        runner = (
            ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
            if _has("pytest")
            else ["-m", "unittest", "discover", "-s", ".", "-t", "."]
        )
        with tempfile.TemporaryDirectory(prefix="connectsw-coverage-") as tmp:
            env = _env(ctx, tmp)
            cov = [sys.executable, "-m", "coverage"]
            argv = [*cov, "run", "--source=.", f"--omit={','.join(OMIT)}", *runner]
            outcome, why = run_step(ctx, argv, timeout, env=env)
            if outcome is None:
                return self.failed(why, "Make the tests finish within gates.test_timeout.")
            report = Path(tmp) / "coverage.json"
            made, why = run_step(ctx, [*cov, "json", "-q", "-o", str(report)], timeout, env=env)
            try:
                data = json.loads(report.read_text())
                percent = float(data["totals"]["percent_covered"])
                files = {
                    name: float(f["summary"]["percent_covered"])
                    for name, f in data.get("files", {}).items()
                }
            except (OSError, ValueError, KeyError, TypeError):
                output = why or (tail(made.output) if made is not None else "")
                return self.failed(
                    f"no coverage data (tests exit {outcome.returncode})\n{output}\n"
                    f"{tail(outcome.output)}",
                    "Make the tests run under coverage.py and import the code they test.",
                )
        lowest = sorted(files.items(), key=lambda kv: kv[1])[:5]
        evidence = (
            f"coverage {percent:.1f}% (threshold {threshold:g}%), tests exit {outcome.returncode}"
            + "".join(f"\n  {name}: {pct:.1f}%" for name, pct in lowest)
        )
        score = min(1.0, percent / threshold) if threshold > 0 else 1.0
        if percent + 1e-9 < threshold:
            return self.failed(
                evidence,
                f"Raise test coverage to at least {threshold:g}% (now {percent:.1f}%): test the "
                "least covered files listed.",
                score=round(score, 3),
            )
        return self.passed(evidence)
