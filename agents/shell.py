"""Generic agents for task-graph files: ``shell`` runs a command, ``noop`` does nothing."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from connectsw.agents.base import (
    PREVIEW_CHARS,
    Agent,
    AgentInput,
    AgentOutput,
    TaskContext,
    in_git_dir,
)
from connectsw.core import supervisor, textfiles
from connectsw.core.errors import TaskError, TaskTimeout

#: Bytes of the command's output kept in the task's outputs (head and tail).
OUTPUT_LIMIT = 4096
#: Bytes of a declared output file read for its preview.
PREVIEW_BYTES = 4096
#: Bytes (UTF-8) of the command, and of each ``env`` value, at most: Linux refuses to
#: start a program with one argument or variable over 128 KiB (MAX_ARG_STRLEN), so a
#: longer one is refused when the plan is made, not when the task runs.
MAX_ARGUMENT_BYTES = 100_000
#: Bytes (UTF-8) of ``CONNECTSW_FEEDBACK`` at most: the newest rounds' feedback that
#: fits (each one is at most 10,000 characters: core/models.py ``MAX_USER_TEXT``).
FEEDBACK_ENV_BYTES = 65_536


class ShellInput(AgentInput):
    """``with`` of a shell task."""

    command: str = Field(min_length=1, description="Shell command, run in the workspace.")
    outputs: list[str] = Field(
        default_factory=list,
        description="Files the command writes (committed as artifacts): relative paths "
        "inside the workspace.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    pass_env: list[str] = Field(
        default_factory=list,
        description="Names of the engine's environment variables to pass through, e.g. "
        "PGPASSWORD (by default a command gets no libpq or CONNECTSW_* variable).",
    )

    @field_validator("command")
    @classmethod
    def _command_fits(cls, command: str) -> str:
        _check_size("the command", command)
        return command

    @field_validator("env")
    @classmethod
    def _values_fit(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            _check_name(name, "env")
            if "\x00" in value:
                raise ValueError(f"env {name!r} holds a NUL character, which no variable can")
            _check_size(f"env {name!r}", value)
        return env

    @field_validator("pass_env")
    @classmethod
    def _names_valid(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            _check_name(name, "pass_env")
            if name in seen:
                raise ValueError(f"pass_env names {name!r} twice")
            seen.add(name)
        return names

    @model_validator(mode="after")
    def _one_source_per_variable(self) -> ShellInput:
        both = sorted(set(self.env) & set(self.pass_env))
        if both:
            raise ValueError(
                f"{both[0]!r} is in both env and pass_env: give its value in env, or pass"
                " the engine's own with pass_env, not both"
            )
        return self

    @field_validator("outputs")
    @classmethod
    def _inside_workspace(cls, paths: list[str]) -> list[str]:
        """Each path relative and inside the workspace, normalised ('a/./b' -> 'a/b')."""
        clean = []
        for raw in paths:
            path = raw.replace("\\", "/")
            if not path.strip():
                raise ValueError("an output path is empty")
            if path.startswith("/"):
                raise ValueError(f"output {raw!r} is absolute; give a path inside the workspace")
            norm = posixpath.normpath(path)
            if norm == ".." or norm.startswith("../"):
                raise ValueError(f"output {raw!r} is outside the workspace")
            if norm == ".":
                raise ValueError(f"output {raw!r} is the workspace itself; name a file")
            if in_git_dir(norm.split("/")):
                raise ValueError(f"output {raw!r} is inside .git: git never commits it")
            if norm in clean:
                raise ValueError(f"output {raw!r} names {norm!r} again")
            clean.append(norm)
        return clean


def _check_name(name: str, where: str) -> None:
    """An environment variable's name: not empty, no ``=`` and no NUL (the OS refuses
    them when the command starts: a ValueError after the plan was stored, trial 7)."""
    if not name:
        raise ValueError(f"{where} has an empty variable name")
    if "=" in name or "\x00" in name:
        raise ValueError(f"{where} variable name {name!r} contains '=' or NUL, which no name can")


def _check_size(what: str, text: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ARGUMENT_BYTES:
        raise ValueError(
            f"{what} is {size} bytes long; at most {MAX_ARGUMENT_BYTES} bytes"
            " (put a longer script in a file in the workspace)"
        )


def feedback_env(feedback: list[str]) -> str:
    """The feedback for ``CONNECTSW_FEEDBACK``: the newest rounds first kept, one per
    line, at most :data:`FEEDBACK_ENV_BYTES` bytes in all.

    A newest item alone over the bound is cut: its head is kept, followed by a line
    saying how many of its bytes were cut, and no UTF-8 character is split. (Kept
    whole, it made the variable longer than Linux lets one be, 128 KiB, and the
    command could not start: trial 8b, F6.)
    """
    kept: list[str] = []
    size = 0
    for text in reversed(feedback):
        size += len(text.encode("utf-8", "surrogatepass")) + 1
        if size > FEEDBACK_ENV_BYTES:
            if not kept:
                kept.append(_cut_to(text, FEEDBACK_ENV_BYTES))
            break
        kept.append(text)
    return "\n".join(reversed(kept))


def _cut_to(text: str, limit: int) -> str:
    """``text``'s head and ``[... N of M bytes cut]``, at most ``limit`` bytes in UTF-8."""
    data = text.encode("utf-8", "surrogatepass")
    total = len(data)
    room = limit - len(f"\n[... {total} of {total} bytes cut]")  # the note's longest
    while room > 0 and data[room] & 0xC0 == 0x80:  # a continuation byte: back to the start
        room -= 1
    head = data[: max(room, 0)].decode("utf-8", "surrogatepass")
    return f"{head}\n[... {total - max(room, 0)} of {total} bytes cut]"


class ShellAgent(Agent):
    """Runs a shell command in the workspace; fails on a non-zero exit."""

    name = "shell"
    isolation = "thread"  # the command runs under the supervisor, which stops it
    stops_at_deadline = True
    description = "Runs a shell command in the workspace (with: command, outputs, env, pass_env)."
    input_model = ShellInput

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Run the command under the supervisor; TaskError on a timeout, stop or failure."""
        spec = ShellInput.model_validate(ctx.inputs)
        env = supervisor.agent_env(spec.env, spec.pass_env)
        env.update(
            {
                "CONNECTSW_EXECUTION_ID": ctx.execution_id,
                "CONNECTSW_TASK_ID": ctx.task.id,
                "CONNECTSW_ATTEMPT": str(ctx.attempt),
            }
        )
        if ctx.feedback:
            env["CONNECTSW_FEEDBACK"] = feedback_env(ctx.feedback)
        try:
            outcome = supervisor.run_for(
                ctx, spec.command, shell=True, env=env, output_limit=OUTPUT_LIMIT
            )
        except supervisor.SupervisorError as exc:
            raise TaskError(str(exc)) from None
        if outcome.stopped == "timeout":
            limit = f" after {ctx.timeout:g}s" if ctx.timeout is not None else ""
            raise TaskTimeout(f"command timed out{limit}")
        if outcome.stopped:
            raise TaskError(f"command stopped: {outcome.stopped}")
        if outcome.returncode != 0:
            last = outcome.last_line()
            raise TaskError(
                f"command exited with {outcome.returncode}" + (f": {last}" if last else "")
            )
        artifacts = []
        for rel in spec.outputs:
            path = _declared_output(ctx, rel)
            kind = textfiles.special_kind(path.stat().st_mode)
            if kind is not None:  # reading a FIFO would wait for ever (issue 5, kind 10)
                raise TaskError(f"declared output {rel!r} is {kind}, not a regular file")
            artifacts.append({"type": "file", "path": rel, "preview": _preview(path)})
        return AgentOutput.model_validate(
            {
                "summary": f"$ {spec.command}",
                "outputs": {"returncode": 0, "output": outcome.output},
                "artifacts": artifacts,
            }
        )


def _declared_output(ctx: TaskContext, rel: str) -> Path:
    """The file a declared output names; TaskError when the command did not write it,
    or wrote a symbolic link that is broken or leads out of the workspace (named so:
    "did not write" was the message for a link the command did write)."""
    given = ctx.workspace / rel
    link = os.readlink(given) if given.is_symlink() else None
    try:
        path = ctx.path(rel)
    except ValueError as exc:  # resolved outside the workspace: through a link
        if link is not None:
            raise TaskError(
                f"declared output {rel!r} is a symbolic link to {link}, outside the workspace"
            ) from None
        raise TaskError(f"declared output {rel!r}: {exc}") from None
    if not path.exists():
        if link is not None:
            raise TaskError(f"declared output {rel!r} is a broken symbolic link to {link}")
        raise TaskError(f"command did not write declared output {rel!r}")
    return path


def _preview(path: Path) -> str:
    """The first characters of a file, reading at most PREVIEW_BYTES of it ('' if not a
    regular file: a FIFO is never waited on)."""
    try:
        with textfiles.open_regular(path) as fh:
            head = fh.read(PREVIEW_BYTES)
    except (OSError, textfiles.TextFileError):
        return ""
    # NUL characters (binary files) become U+FFFD: no store can hold them.
    return head.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:PREVIEW_CHARS]


class NoopAgent(Agent):
    """Does nothing and succeeds: joins and benchmarks."""

    name = "noop"
    isolation = "thread"  # does nothing
    brief = True
    description = "Does nothing and succeeds."

    def run(self, ctx: TaskContext) -> AgentOutput:
        return AgentOutput()
