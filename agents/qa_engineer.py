"""The QA-engineer agent: runs the workspace's tests and writes docs/QA-report.md.

With a model configured the report's body is the model's reading of the real test
output (prompt ``qa-engineer.md``), under the same header of measured results;
the task passes or fails on those results alone.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connectsw.agents.base import Agent, AgentOutput, TaskContext
from connectsw.agents.llm.base import Message
from connectsw.agents.llm.context import section
from connectsw.agents.llm.files import strip_fence
from connectsw.agents.llm.prompts import load_prompt
from connectsw.agents.llm.session import ModelSession, open_session
from connectsw.agents.text import feedback_section
from connectsw.core import supervisor
from connectsw.core.errors import TaskError, TaskTimeout

REPORT_PATH = "docs/QA-report.md"
DEFAULT_TIMEOUT = 600.0
TAIL_LINES = 40
#: Bytes of the test output kept (head and tail; the summary lines are at the end).
OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class RunResult:
    """The outcome of one test command."""

    command: str
    returncode: int
    output: str
    passed: int
    failed: int


def build_command(paths: Sequence[str] = ()) -> list[str]:
    """Arguments after the interpreter: pytest if importable here, else unittest discovery.

    ``paths`` (workspace-relative ``.py`` files) runs only those tests.
    """
    if importlib.util.find_spec("pytest") is not None:
        # No cache provider: running the tests must not leave .pytest_cache in the workspace.
        return ["-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
    if paths:
        modules = [p.removesuffix(".py").replace("/", ".") for p in paths]
        return ["-m", "unittest", "-v", *modules]
    return ["-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"]


def count_results(output: str, pytest: bool) -> tuple[int, int]:
    """(passed, failed) parsed from pytest's or unittest's summary; errors count as failed."""
    if pytest:
        summaries = [
            s for s in output.splitlines() if re.search(r"\d+ (passed|failed|errors?)\b", s)
        ]
        last = summaries[-1] if summaries else ""

        def count(word: str) -> int:
            return sum(int(n) for n in re.findall(rf"(\d+) {word}\b", last))

        return count("passed"), count("failed") + count("errors?")
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    total = int(ran.group(1)) if ran else 0
    failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", output))
    skipped = sum(int(n) for n in re.findall(r"skipped=(\d+)", output))
    return max(total - failed - skipped, 0), failed


def scrub(output: str) -> str:
    """Output with durations removed, so the report is the same for the same results."""
    # pytest: "3 passed in 0.12s (0:00:00)"; unittest: "Ran 3 tests in 0.004s".
    return re.sub(r"\bin \d+(?:\.\d+)?s\b(?: \([0-9:.]+\))?", "in <time>", output)


def run_tests(ctx: TaskContext, paths: Sequence[str] = ()) -> RunResult:
    """Run the tests under the supervisor in the workspace.

    The deadline, stop check and spawn hook come from ``ctx`` (else
    ``ctx.timeout`` or :data:`DEFAULT_TIMEOUT` seconds from now). Raises
    TaskTimeout past the deadline (the whole process group is ended first),
    TaskError if stopped or if the interpreter cannot be started. ``paths``: only
    those test files (see :func:`build_command`).
    """
    args = build_command(paths) if paths else build_command()
    display = " ".join(["python", *args])
    timeout = ctx.timeout if ctx.timeout is not None else DEFAULT_TIMEOUT
    extra: dict[str, Any] = {}
    if getattr(ctx, "deadline", None) is None:
        extra["deadline"] = time.monotonic() + timeout
    # No bytecode: the engine commits only artifacts, so keep the worktree free of __pycache__.
    env = supervisor.agent_env({"PYTHONDONTWRITEBYTECODE": "1"})
    try:
        outcome = supervisor.run_for(
            ctx, [sys.executable, *args], env=env, output_limit=OUTPUT_LIMIT, **extra
        )
    except supervisor.SupervisorError as exc:
        raise TaskError(f"could not run {display}: {exc}") from None
    if outcome.stopped == "timeout":
        raise TaskTimeout(f"tests did not finish within {timeout:g}s: {display}")
    if outcome.stopped or outcome.returncode is None:
        raise TaskError(f"tests stopped: {outcome.stopped}")
    output = scrub(outcome.output)
    passed, failed = count_results(output, pytest="pytest" in args)
    return RunResult(display, outcome.returncode, output, passed, failed)


def render_report(run: RunResult, feedback: list[str]) -> str:
    """docs/QA-report.md; no dates, so the same results give the same bytes."""
    tail = "\n".join(run.output.rstrip().splitlines()[-TAIL_LINES:])
    return "\n".join(
        [
            render_header(run),
            f"## Output (last {TAIL_LINES} lines)\n",
            f"```text\n{tail}\n```\n",
            feedback_section(feedback),
        ]
    )


def render_header(run: RunResult) -> str:
    """The report's measured part: result, command, exit code, counts."""
    ok = run.returncode == 0 and run.passed > 0
    return "\n".join(
        [
            "# QA report\n",
            f"Result: **{'PASSED' if ok else 'FAILED'}**\n",
            "| Command | Exit code | Passed | Failed |",
            "| --- | --- | --- | --- |",
            f"| `{run.command}` | {run.returncode} | {run.passed} | {run.failed} |\n",
        ]
    )


class QAEngineerAgent(Agent):
    """Runs the tests; fails the task if any fail, so the stage's gate sees real results."""

    name = "qa-engineer"
    isolation = "thread"  # the tests run under the supervisor, which stops them
    description = "Runs the workspace's tests and writes docs/QA-report.md; fails if tests fail."

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Run the tests, write the report, and raise TaskError unless they all passed."""
        if not ctx.path("tests").is_dir():
            raise TaskError("no tests/ directory in the workspace")
        run = run_tests(ctx)
        report = render_report(run, ctx.feedback)
        session = open_session(self.name, ctx)
        if session is not None:
            report = self._with_model(ctx, run, session)
        # The report is written even on failure so a person can read why.
        artifact = ctx.write(REPORT_PATH, report, type="document", description="QA report")
        if run.returncode != 0:
            raise TaskError(
                f"tests failed: {run.failed} failed, {run.passed} passed "
                f"(exit code {run.returncode}, see {REPORT_PATH})"
            )
        if run.passed == 0:
            raise TaskError(f"no tests ran: {run.command}")
        return AgentOutput(
            summary=f"{run.passed} tests passed",
            outputs={
                "tests_passed": run.passed,
                "tests_failed": run.failed,
                "command": run.command,
            },
            artifacts=[artifact],
        )

    def _with_model(self, ctx: TaskContext, run: RunResult, session: ModelSession) -> str:
        """The report: the measured header, then the model's reading of the output."""
        from connectsw.agents.llm.coding import tail

        ask = "\n".join(
            [
                f"Command: `{run.command}`; exit code {run.returncode}; "
                f"{run.passed} passed, {run.failed} failed.\n",
                f"```text\n{tail(run.output)}\n```\n",
                section("Feedback to incorporate", ctx.feedback, "No feedback received yet."),
            ]
        )
        reply = session.complete(
            [Message("system", load_prompt(self.name, ctx.workspace)), Message("user", ask)]
        )
        return (
            render_header(run) + "\n" + strip_fence(reply) + "\n" + feedback_section(ctx.feedback)
        )
