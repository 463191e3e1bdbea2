"""Evaluate the gate rules a stage names and combine their verdicts."""

from __future__ import annotations

import logging

from connectsw.core.models import GateResult, RuleResult
from connectsw.gates.base import GateContext
from connectsw.plugins.registry import Registries

log = logging.getLogger("connectsw.gates")


def evaluate_stage(ctx: GateContext, registries: Registries) -> GateResult:
    """Run every rule named by the stage; the gate passes if all of them pass.

    Once ``ctx.stopped()`` gives a reason (cancel, lease lost), no further rule
    runs and the gate fails; the engine then writes nothing of it.
    """
    results: list[RuleResult] = []
    for name in ctx.stage.gates:
        reason = ctx.stopped()
        if reason is not None:
            results.append(RuleResult(rule=name, passed=False, details=f"not run: {reason}"))
            continue
        rule = registries.gates.get(name)
        if rule is None:
            results.append(
                RuleResult(
                    rule=name,
                    passed=False,
                    score=0.0,
                    details="rule is not installed",
                    remediation=f"install the plugin providing {name!r}",
                )
            )
            continue
        try:
            if not rule.applies(ctx):
                results.append(RuleResult(rule=name, passed=True, details="not applicable"))
                continue
            results.append(rule.evaluate(ctx))
        except Exception as exc:  # a broken rule fails its gate, it does not crash the engine
            log.exception("gate rule %s crashed", name)
            results.append(
                RuleResult(
                    rule=name,
                    passed=False,
                    score=0.0,
                    details=f"rule crashed: {type(exc).__name__}: {exc}",
                )
            )
    score = sum(r.score for r in results) / len(results) if results else 1.0
    return GateResult(
        stage=ctx.stage.index,
        passed=all(r.passed for r in results),
        score=round(score, 3),
        rules=results,
    )
