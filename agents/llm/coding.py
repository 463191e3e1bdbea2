"""How an engineer agent writes code with a model: files in, tests run, failures fed back.

The model answers in the ``FILE:`` format (:mod:`.files`). The agent writes the
files, runs the tests it wrote (only those: the other engineer may be writing
theirs at the same time), and while they fail gives the model the command and
the end of its output, up to ``llm.fix_rounds`` times. Tests that still fail then
fail the task, saying how many rounds were tried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.agents.llm.base import Message
from connectsw.agents.llm.files import FileBlock, parse_files
from connectsw.agents.llm.prompts import load_prompt
from connectsw.agents.llm.session import ModelSession
from connectsw.core.errors import LLMBadResponse, TaskError
from connectsw.core.models import Artifact

#: Lines and characters of failing test output given back to the model.
FEEDBACK_LINES = 120
FEEDBACK_CHARS = 12_000


@dataclass
class Written:
    """What the rounds produced: the artifacts (one per path, last text) and rounds used."""

    artifacts: list[Artifact]
    fix_rounds: int
    tests: list[str]
    passed: int = 0

    def output(self, model: str, **outputs: Any) -> AgentOutput:
        """The engineer's result: a summary naming ``model``, the files, tests and
        rounds in ``outputs`` (plus the agent's own ``outputs``), the artifacts."""
        return AgentOutput(
            summary=f"Wrote {len(self.artifacts)} files with {model}; "
            f"{self.passed} tests pass after {self.fix_rounds} fix rounds",
            outputs={
                "files": [a.path for a in self.artifacts],
                "tests": self.tests,
                "fix_rounds": self.fix_rounds,
                **outputs,
            },
            artifacts=self.artifacts,
        )


def artifact_type(path: str) -> str:
    """``test``, ``document``, ``page`` or ``code`` for a written path."""
    name = path.rsplit("/", 1)[-1]
    if path.startswith("tests/") or name.startswith("test_"):
        return "test"
    if name.endswith(".md"):
        return "document"
    if name.endswith(".html"):
        return "page"
    return "code"


def is_test_file(path: str) -> bool:
    """A Python test module: ``test_*.py`` (or ``*_test.py``)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def tail(text: str) -> str:
    """The end of a test run's output, bounded for a prompt."""
    lines = text.rstrip().splitlines()[-FEEDBACK_LINES:]
    joined = "\n".join(lines)
    return joined[-FEEDBACK_CHARS:]


def write_files(ctx: TaskContext, files: Sequence[FileBlock], into: dict[str, Artifact]) -> None:
    """Write each file whole into the workspace, keeping its artifact by path."""
    for block in files:
        into[block.path] = ctx.write(
            block.path, block.text, type=artifact_type(block.path), description="Written by model"
        )


def write_and_fix(
    ctx: TaskContext,
    session: ModelSession,
    system: str,
    request: str,
    allowed: tuple[str, ...],
    rounds: int,
) -> Written:
    """Ask for files, write them, and loop on their failing tests (see the module doc).

    Raises :class:`LLMBadResponse` for a reply without files, :class:`TaskError` when
    the tests still fail after ``rounds`` fix rounds.
    """
    from connectsw.agents.qa_engineer import run_tests

    messages = [Message("system", system), Message("user", request)]
    written: dict[str, Artifact] = {}
    round_ = 0
    while True:
        reply = session.complete(messages)
        files = parse_files(reply, allowed)
        if not files:
            raise LLMBadResponse(
                "the model's reply has no FILE: blocks (see the prompt file-format.md)"
            )
        write_files(ctx, files, written)
        tests = sorted(p for p in written if is_test_file(p))
        if not tests:
            return Written(list(written.values()), round_, [])
        run = run_tests(ctx, tests)
        if run.returncode == 0 and run.passed > 0:
            return Written(list(written.values()), round_, tests, run.passed)
        if round_ >= rounds:
            raise TaskError(
                f"tests still fail after {rounds} fix round{'s' if rounds != 1 else ''}: "
                f"{run.failed} failed, {run.passed} passed ({run.command})"
            )
        round_ += 1
        messages += [
            Message("assistant", reply),
            Message(
                "user",
                f"{load_prompt('fix-tests', ctx.workspace).strip()}\n\n"
                f"Command: `{run.command}` (exit code {run.returncode})\n\n"
                f"```text\n{tail(run.output)}\n```\n",
            ),
        ]
