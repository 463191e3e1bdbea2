"""What a gate rule is, and what it sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectsw.core.models import Execution, RuleResult, Stage, TaskResult


@dataclass
class GateContext:
    """A finished stage: its execution, workspace and task results."""

    execution: Execution
    stage: Stage
    workspace: Path
    results: dict[str, TaskResult] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


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
