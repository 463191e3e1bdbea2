"""What a gate rule is, and what it sees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectsw.core.models import Execution, RuleResult, Stage, TaskResult
from connectsw.core.supervisor import ProcessRef

#: Prefix of a result's details when its rule could not run (a tool is missing); the
#: rule set of the checkpoint says whether that passes (``not_run_passes``).
NOT_RUN = "not run: "
#: Prefix of a result's details when its rule raised or returned no RuleResult: a
#: plugin's bug, which the stage's agents cannot fix (no remediation round).
CRASHED = "rule crashed: "
#: Details of a result whose rule no loaded plugin provides.
NOT_INSTALLED = "rule is not installed"


@dataclass
class GateContext:
    """A finished stage: its execution, workspace and task results.

    A rule that runs a command runs it with ``supervisor.run_for(ctx, ...)``:
    ``should_stop`` (why it must stop now: ``"cancelled"``, ``"lease lost"``; or
    None) and ``on_spawn`` (records the command's process group for a new owner)
    then stop it, its whole process group, on cancel and when the lease is lost.
    ``config`` is the ``[gates]`` settings as a dict; ``artifact_dir`` is where a
    rule keeps files it produces (a screenshot), outside the workspace.
    """

    execution: Execution
    stage: Stage
    workspace: Path
    results: dict[str, TaskResult] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    should_stop: Callable[[], str | None] | None = None
    on_spawn: Callable[[ProcessRef], None] | None = None
    artifact_dir: Path | None = None
    _traits: frozenset[str] | None = field(default=None, repr=False)

    def stopped(self) -> str | None:
        """Why the gate must stop now, or None."""
        return self.should_stop() if self.should_stop is not None else None

    @property
    def traits(self) -> frozenset[str]:
        """What the workspace holds (:func:`connectsw.gates.detect.traits`), read once."""
        if self._traits is None:
            from connectsw.gates.detect import traits

            self._traits = traits(self.workspace, self.config, self.results)
        return self._traits

    def artifacts(self) -> Path:
        """The folder for this gate run's files (created; a temporary one if none was given)."""
        if self.artifact_dir is None:
            import tempfile

            self.artifact_dir = Path(tempfile.mkdtemp(prefix="connectsw-gate-"))
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        return self.artifact_dir


class GateRule:
    """Base class for gate rules; subclasses set ``name`` and implement ``evaluate``.

    ``applies_to`` declares the workspace traits the rule judges (see
    :data:`connectsw.gates.detect.TRAITS`); the rule applies when the workspace
    has at least one of them (an empty tuple: always).

    ``isolation`` says where ``applies`` and ``evaluate`` run: ``"process"`` (the
    default, for plugin rules) in a forked child under a keeper, as process agents
    run, ended with its whole process group on cancel, a lost lease, the owner's
    death and ``timeout`` (seconds; None: no deadline of its own), so a rule that
    blocks cannot hold the gate; ``"thread"`` in the engine's process (the built-in
    rules, which run their commands under the supervisor and poll ``ctx.stopped()``).
    """

    name = ""
    description = ""
    applies_to: tuple[str, ...] = ()
    isolation = "process"
    timeout: float | None = None

    def applies(self, ctx: GateContext) -> bool:
        """False when the rule has nothing to judge in this stage (it then passes)."""
        return not self.applies_to or bool(ctx.traits.intersection(self.applies_to))

    def evaluate(self, ctx: GateContext) -> RuleResult:
        """Judge the stage."""
        raise NotImplementedError

    # -- helpers for results ---------------------------------------------------------
    def passed(self, details: str, score: float = 1.0, **kw: Any) -> RuleResult:
        """A passing result with its evidence."""
        return RuleResult(rule=self.name, passed=True, score=score, details=details, **kw)

    def failed(self, details: str, remediation: str, score: float = 0.0, **kw: Any) -> RuleResult:
        """A failing result with its evidence and what to do about it."""
        return RuleResult(
            rule=self.name,
            passed=False,
            score=score,
            details=details,
            remediation=remediation,
            **kw,
        )

    def not_run(self, reason: str, remediation: str = "") -> RuleResult:
        """The rule could not run (``reason``: "chromium not installed"); failed unless the
        rule set lets it pass."""
        return RuleResult(
            rule=self.name,
            passed=False,
            score=0.0,
            ran=False,
            details=NOT_RUN + reason,
            remediation=remediation,
        )
