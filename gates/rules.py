"""Built-in gate rules."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from connectsw import hookimpl
from connectsw.core import supervisor
from connectsw.core.models import RuleResult
from connectsw.gates.base import GateContext, GateRule

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox"}
TAIL_LINES = 15
#: Seconds the test command may run unless ``gates.test_timeout`` says otherwise.
DEFAULT_TIMEOUT = 600.0
#: Bytes of the test command's output kept (head and tail).
OUTPUT_LIMIT = 64 * 1024
#: pytest's exit status when no test was collected.
NO_TESTS = 5


def find_tests(root: Path) -> bool:
    """True if ``root`` holds Python test files (``test_*.py`` or ``*_test.py``)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                if entry.name not in SKIP_DIRS:
                    stack.append(entry)
            elif entry.suffix == ".py" and (
                entry.name.startswith("test_") or entry.stem.endswith("_test")
            ):
                return True
    return False


class TestsPassRule(GateRule):
    """The workspace's test suite passes."""

    isolation = "thread"  # built-in: its commands run under the supervisor
    __test__ = False  # not a pytest test class
    applies_to = ("tests",)
    name = "tests-pass"
    description = "The workspace's tests pass (pytest if installed, else unittest)."

    def _command(self, ctx: GateContext) -> list[str]:
        configured = ctx.config.get("test_command")
        if configured:
            return shlex.split(configured)
        if importlib.util.find_spec("pytest") is not None:
            return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        return [sys.executable, "-m", "unittest", "discover", "-s", ".", "-t", "."]

    def applies(self, ctx: GateContext) -> bool:
        return bool(ctx.config.get("test_command")) or find_tests(ctx.workspace)

    def _env(self, ctx: GateContext) -> dict[str, str]:
        if ctx.config.get("test_command") or ctx.config.get("pytest_plugins", False):
            return supervisor.agent_env()
        # The pytest plugins installed beside ConnectSW are not the workspace's (and cost
        # seconds per run): gates.pytest_plugins loads them.
        return supervisor.agent_env({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})

    def evaluate(self, ctx: GateContext) -> RuleResult:
        """Run the test command under the supervisor, at most ``test_timeout`` seconds.

        Past the timeout, on cancel and when the owner's lease is lost
        (``ctx.should_stop``), the command's whole process group is ended
        (SIGTERM, grace, SIGKILL). Output is kept bounded; the details show its
        last lines.
        """
        cmd = self._command(ctx)
        timeout = float(ctx.config.get("test_timeout", DEFAULT_TIMEOUT))
        shown = " ".join(shlex.quote(c) for c in cmd)
        try:
            outcome = supervisor.run_for(
                ctx,
                cmd,
                env=self._env(ctx),
                deadline=time.monotonic() + timeout,
                output_limit=OUTPUT_LIMIT,
            )
        except supervisor.SupervisorError as exc:
            return RuleResult(
                rule=self.name,
                passed=False,
                score=0.0,
                details=f"cannot run {shown}: {exc.reason}",
                remediation="Set gates.test_command to a command that runs.",
            )
        if outcome.stopped and outcome.stopped != "timeout":
            details = f"{shown} stopped: {outcome.stopped}"
            return RuleResult(rule=self.name, passed=False, score=0.0, details=details)
        if outcome.stopped:
            return RuleResult(
                rule=self.name,
                passed=False,
                score=0.0,
                details=f"{shown} timed out after {timeout:g}s",
                remediation="Make the test suite finish within the timeout.",
            )
        tail = "\n".join(outcome.output.strip().splitlines()[-TAIL_LINES:])
        none_ran = self._none_ran(ctx, cmd, outcome.returncode, outcome.output)
        if none_ran:
            return RuleResult(
                rule=self.name,
                passed=False,
                score=0.0,
                details=f"$ {shown}\n{tail}\nno test ran: {none_ran}",
                remediation="Write tests the runner finds (test_*.py files with tests in them),"
                " or set gates.test_command to the command that runs the workspace's tests.",
            )
        passed = outcome.returncode == 0
        return RuleResult(
            rule=self.name,
            passed=passed,
            score=1.0 if passed else 0.0,
            details=f"$ {shown}\n{tail}",
            remediation=""
            if passed
            else ("Fix the failing tests in the workspace, then resume; or request changes."),
        )

    @staticmethod
    def _none_ran(ctx: GateContext, cmd: list[str], returncode: int | None, output: str) -> str:
        """Why the built-in test command ran no test ("" if it ran some, or the command is
        the configured one): test files without a test the runner finds never pass
        (trial 7: unittest's "Ran 0 tests" exits 0 on Python 3.11)."""
        if ctx.config.get("test_command"):
            return ""
        if cmd[1:3] == ["-m", "pytest"] and returncode == NO_TESTS:
            return "pytest collected no test"
        if cmd[1:3] == ["-m", "unittest"] and re.search(r"^Ran 0 tests in", output, re.MULTILINE):
            return (
                "unittest found no test case (pytest-style test functions need pytest"
                " where connectsw runs)"
            )
        return ""


def builtin_rules() -> list[GateRule]:
    """One instance of each built-in rule, in the order ``gates list`` shows them."""
    from connectsw.gates.build import BuildRule
    from connectsw.gates.history import TestFirstRule
    from connectsw.gates.service import ServerStartRule, VisualRule
    from connectsw.gates.testing import CoverageRule, SmokeTestsRule

    return [
        TestsPassRule(),
        BuildRule(),
        ServerStartRule(),
        SmokeTestsRule(),
        VisualRule(),
        TestFirstRule(),
        CoverageRule(),
    ]


@hookimpl(trylast=True)
def register_gates(register: Any) -> None:
    """Register the built-in gate rules."""
    for rule in builtin_rules():
        register(rule)
