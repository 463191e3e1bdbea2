"""What an agent is: a named object whose ``run(ctx)`` does one task in a workspace.

Agents are registered through the ``register_agents`` hook. The engine calls
``run`` inside a Dask task, retries it on failure, and commits the artifacts it
returns to the workspace's git repository (one commit per task). ``run`` must be
safe to call again for the same task: write files whole, never append.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectsw.core.errors import WorkspacePathError
from connectsw.core.models import Artifact, LLMUsage, Request, TaskSpec

log = logging.getLogger("connectsw.agents")

PREVIEW_CHARS = 400


def in_git_dir(parts: Iterable[str]) -> bool:
    """Whether a path's components (``Path.parts``, or a POSIX path split on ``/``) go
    through a ``.git`` directory, in any case (as git's own ``verify_path`` refuses them):
    git never commits such a file, and a hook written there would run on the next commit."""
    return any(part.lower() == ".git" for part in parts)


class AgentOutput(BaseModel):
    """What ``Agent.run`` returns: a summary, JSON outputs for dependents, artifacts.

    ``defer_build`` (as core.models' ApiModel): the validator is built on first use,
    so listing agents (``connectsw plugins``) builds none."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    summary: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    #: Language-model use of the attempt; None: the runner takes ``ctx.usage``.
    usage: LLMUsage | None = None


class AgentInput(BaseModel):
    """Base for an agent's ``input_model``: the task's ``with`` block, unknown keys refused.

    Subclasses are ``defer_build``: the validator is built when the planner first
    validates a task's ``with`` (a model that cannot be built is then the plugin's
    error, core/planner.py), not when the agent's module is imported."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


@dataclass
class TaskContext:
    """Everything an agent may use to do its task."""

    execution_id: str
    task: TaskSpec
    workspace: Path
    request: Request
    plan_name: str = ""
    attempt: int = 1
    round: int = 0
    feedback: list[str] = field(default_factory=list)
    #: The project's memories best matching this task, best first, when the agent
    #: reads memory (``uses_memory``): dicts of type, content, relevance, source,
    #: timestamp (the reference's ``/v1/memory/context`` items).
    memories: list[dict[str, Any]] = field(default_factory=list)
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    #: ``time.monotonic()`` value at which this attempt must have ended (None: no
    #: deadline); set by the runner when the attempt starts.
    deadline: float | None = None
    #: Polled by long work: a reason (``"cancelled"``, ``"lease lost"``, ...) to stop now.
    should_stop: Callable[[], str | None] | None = None
    #: Called with the process group of each command the agent starts, so that a
    #: resumed execution can end a crashed owner's leftovers (the supervisor calls it).
    on_spawn: Callable[[Any], None] | None = None
    #: Language-model use so far in this attempt, added to by
    #: :class:`connectsw.agents.llm.session.ModelSession`; recorded with the attempt's
    #: result, failed or not (for an agent run in a child process, only what its
    #: ``AgentOutput.usage`` returns).
    usage: LLMUsage = field(default_factory=LLMUsage)

    @property
    def inputs(self) -> dict[str, Any]:
        """The task's ``with`` block."""
        return self.task.with_

    def path(self, relpath: str) -> Path:
        """Absolute path of ``relpath`` inside the workspace.

        Raises :class:`~connectsw.core.errors.WorkspacePathError` (a TaskError and a
        ValueError) when it escapes the workspace, or when it, or where its symlinks lead,
        goes through a ``.git`` directory (:func:`in_git_dir`): the workspace's commits
        hold only what git tracks, and git's own files are the engine's."""
        target = (self.workspace / relpath).resolve()
        root = self.workspace.resolve()
        if target != root and root not in target.parents:
            raise WorkspacePathError(f"path {relpath!r} is outside the workspace")
        if in_git_dir(Path(relpath).parts) or in_git_dir(target.relative_to(root).parts):
            raise WorkspacePathError(
                f"path {relpath!r} is inside .git, git's own directory: an agent writes"
                " only files of the workspace that git can commit"
            )
        return target

    def write(
        self, relpath: str, text: str, *, type: str = "file", description: str = ""
    ) -> Artifact:
        """Write a whole text file in the workspace and return it as an artifact."""
        target = self.path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return Artifact(
            type=type, path=relpath, description=description, preview=text[:PREVIEW_CHARS]
        )

    def read(self, relpath: str, default: str = "") -> str:
        """Text of a workspace file, or ``default`` if it does not exist."""
        target = self.path(relpath)
        return target.read_text(encoding="utf-8") if target.is_file() else default


class Agent:
    """Base class for agents; subclasses set ``name`` and implement ``run``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_model: ClassVar[type[BaseModel] | None] = None
    #: Where ``run`` executes. ``"process"`` (default): a forked child in its own
    #: process group, killed at the deadline, on cancel and when the owner loses its
    #: lease. ``"thread"``: the worker's thread; only for agents whose blocking work
    #: all goes through :mod:`connectsw.core.supervisor` (which stops it) or is brief.
    isolation: ClassVar[str] = "process"
    #: True for a thread agent whose every wait ends at ``ctx.deadline`` (its commands
    #: run through :func:`connectsw.core.supervisor.run_for`, whose reaper stops them at
    #: the deadline even while the worker is stopped): a result it returns is kept when
    #: the worker notices it only after the deadline (a paused worker: SIGSTOP, a
    #: stalled machine; trial 7, M4). Otherwise a thread agent's result that comes back
    #: past the deadline is a timeout: its work may have run longer.
    stops_at_deadline: ClassVar[bool] = False
    #: True for an agent whose ``run`` is brief and starts no process (a few file
    #: writes): its attempt's start is recorded together with its end, in the same
    #: group commit. Otherwise the start is durable before ``run`` begins, so that an
    #: attempt lost in a crash is recorded ``interrupted`` and never reuses its number.
    brief: ClassVar[bool] = False
    #: True for an agent that reads project memory: the engine gives its tasks the
    #: project's best-matching memories in ``TaskContext.memories`` (core/memory_auto.py).
    uses_memory: ClassVar[bool] = False

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Do the task; raise :class:`connectsw.core.errors.TaskError` to fail it."""
        raise NotImplementedError
