"""What a gate rule is, and what it sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectsw.core.models import Execution, RuleResult, Stage, TaskResult
from connectsw.core.supervisor import ProcessRef


@dataclass
class GateContext:
    """A finished stage: its execution, workspace and task results.

    A rule that runs a command runs it with ``supervisor.run_for(ctx, ...)``:
    ``should_stop`` (why it must stop now: ``"cancelled"``, ``"lease lost"``; or
    None) and ``on_spawn`` (records the command's process group for a new owner)
    then stop it, its whole process group, on cancel and when the lease is lost.
    """

    execution: Execution
    stage: Stage
    workspace: Path
    results: dict[str, TaskResult] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    should_stop: Callable[[], str | None] | None = None
    on_spawn: Callable[[ProcessRef], None] | None = None

    def stopped(self) -> str | None:
        """Why the gate must stop now, or None."""
        return self.should_stop() if self.should_stop is not None else None


class GateRule:
    """Base class for gate rules; subclasses set ``name`` and implement ``evaluate``."""

    name = ""
    description = ""

    def applies(self, ctx: GateContext) -> bool:
        """False when the rule has nothing to judge in this stage (it then passes)."""
        return True

    def evaluate(self, ctx: GateContext) -> RuleResult:
        """Judge the stage."""
        raise NotImplementedError
