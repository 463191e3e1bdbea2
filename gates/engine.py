"""Evaluate a stage's gate: the applicable rules, their verdicts combined (reference §2.3).

The reference's ``validateCheckpoint``: the rules of a checkpoint are the
stage's own gates (from its workflow or task graph) and the rule set configured
for its checkpoint type (``[gates.rule_sets.TYPE]``, the reference's
``QUALITY_RULES``); each applicable rule runs; the gate passes when every rule
passes, with each rule's evidence, a remediation text and a score.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from connectsw.core.models import GateResult, RuleResult, Stage
from connectsw.gates.base import CRASHED, NOT_INSTALLED, GateContext
from connectsw.plugins.manager import describe_error, is_plugin_failure
from connectsw.plugins.output import plugin_output_to_stderr
from connectsw.plugins.registry import Registries

log = logging.getLogger("connectsw.gates")

#: Lines of a rule's evidence repeated in the feedback sent to the agents.
FEEDBACK_EVIDENCE_LINES = 6


def rule_set(stage: Stage, config: Mapping[str, Any]) -> dict[str, Any]:
    """The configured rule set of the stage's checkpoint type (``{}`` if none)."""
    if stage.checkpoint is None:
        return {}
    sets = config.get("rule_sets") or {}
    found = sets.get(stage.checkpoint.type) or {}
    return dict(found) if isinstance(found, Mapping) else dict(found.__dict__)


def rules_for(stage: Stage, config: Mapping[str, Any]) -> list[str]:
    """The stage's own gates, then its checkpoint type's rule set, each name once."""
    names = list(stage.gates) + list(rule_set(stage, config).get("rules", []))
    return list(dict.fromkeys(names))


def evaluate_stage(ctx: GateContext, registries: Registries) -> GateResult:
    """Run every rule that applies to the stage; the gate passes if all of them pass.

    A rule that could not run (``ran`` False, "not run: chromium not installed")
    passes only where the rule set lists it in ``not_run_passes``; it then does
    not count in the score. The score is the mean of the other rules' scores
    (1.0 with none). Once ``ctx.stopped()`` gives a reason (cancel, lease lost),
    no further rule runs and the gate fails; the engine then writes nothing of it.
    """
    results: list[RuleResult] = []
    allowed = set(rule_set(ctx.stage, ctx.config).get("not_run_passes", []))
    for name in rules_for(ctx.stage, ctx.config):
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
                    details=NOT_INSTALLED,
                    remediation=f"install the plugin providing {name!r}",
                )
            )
            continue
        if getattr(rule, "isolation", "process") != "thread":
            results.append(_run_forked(name, rule, ctx, registries, allowed))
            continue
        try:
            with plugin_output_to_stderr():
                if not rule.applies(ctx):
                    results.append(RuleResult(rule=name, passed=True, details="not applicable"))
                    continue
                result = rule.evaluate(ctx)
        except BaseException as exc:  # a broken rule fails its gate, it does not crash the engine
            if not is_plugin_failure(exc):
                raise
            result = _crashed(name, registries, describe_error(exc, where=True), exc)
        else:
            if not isinstance(result, RuleResult):
                place = _place(rule)
                what = f"returned {type(result).__name__}, not RuleResult" + (
                    f" ({place})" if place else ""
                )
                result = _crashed(name, registries, what)
        results.append(_allowed(result, name, allowed))
    scored = [r.score for r in results if r.ran or not r.passed]
    score = sum(scored) / len(scored) if scored else 1.0
    return GateResult(
        stage=ctx.stage.index,
        passed=all(r.passed for r in results),
        score=round(score, 3),
        rules=results,
    )


def _allowed(result: RuleResult, name: str, allowed: set[str]) -> RuleResult:
    """``result``, passing when its rule could not run and the rule set allows that."""
    if not result.ran and name in allowed:
        return result.model_copy(
            update={"passed": True, "details": f"{result.details} (passes: the rule set allows it)"}
        )
    return result


def _run_forked(
    name: str, rule: Any, ctx: GateContext, registries: Registries, allowed: set[str]
) -> RuleResult:
    """Run a process-isolated rule's ``applies`` and ``evaluate`` in a forked child under
    a keeper (:func:`connectsw.core.isolation.run_forked`): on cancel, a lost lease,
    the owner's death or the rule's ``timeout`` its whole process group is ended
    before this returns. A rule so stopped fails, ``stopped: REASON``; the engine keeps
    no verdict of a gate stopped by cancel or a lost lease."""
    from connectsw.core.durations import cap_timeout
    from connectsw.core.errors import TaskError, TaskTimeout
    from connectsw.core.isolation import AgentCrashed, AttemptStopped, run_forked

    def work() -> Any:  # in the rule's process: the parent watches the stop reasons
        ctx.should_stop = None
        ctx.on_spawn = None
        if not rule.applies(ctx):
            return RuleResult(rule=name, passed=True, details="not applicable").model_dump(
                mode="json"
            )
        result = rule.evaluate(ctx)
        if not isinstance(result, RuleResult):
            place = _place(rule)
            what = f"returned {type(result).__name__}, not RuleResult" + (
                f" ({place})" if place else ""
            )
            return {"not_a_result": what}
        return result.model_dump(mode="json")

    timeout = getattr(rule, "timeout", None)  # checked at registration: > 0 or None
    deadline = time.monotonic() + cap_timeout(float(timeout)) if timeout else None
    should_stop, on_spawn = ctx.should_stop, ctx.on_spawn
    try:
        data = run_forked(
            work,
            deadline=deadline,
            should_stop=should_stop,
            on_spawn=on_spawn,
            timeout_message=f"timed out after {timeout:g}s" if timeout else "timed out",
            what="gate rule",
        )
    except AttemptStopped as exc:
        return RuleResult(rule=name, passed=False, details=f"stopped: {exc.reason}")
    except TaskTimeout as exc:
        return RuleResult(
            rule=name,
            passed=False,
            score=0.0,
            details=f"rule {exc}",
            remediation=f"gate rule {name!r} did not finish within its timeout",
        )
    except AgentCrashed as exc:  # it raised: ``Type: message (file.py:LINE)``
        return _crashed(name, registries, str(exc), traceback_text=exc.traceback)
    except TaskError as exc:  # raised a TaskError, or its process died
        return _crashed(name, registries, str(exc))
    finally:
        ctx.should_stop, ctx.on_spawn = should_stop, on_spawn
    if "not_a_result" in data:
        return _crashed(name, registries, data["not_a_result"])
    return _allowed(RuleResult.model_validate(data), name, allowed)


def _crashed(
    name: str,
    registries: Registries,
    what: str,
    exc: BaseException | None = None,
    traceback_text: str | None = None,
) -> RuleResult:
    """The failed result of rule ``name`` that raised or returned no RuleResult (``what``:
    ``KeyError: 'x' (rule.py:12)``), logged on one line naming its plugin; the
    traceback only with ``CONNECTSW_DEBUG`` set (as plugin listeners' failures are)."""
    plugin = registries.gates.owners.get(name, "?")
    details = f'{CRASHED}{what}; a bug in plugin "{plugin}" (gate rule "{name}")'
    debug = exc is not None and bool(os.environ.get("CONNECTSW_DEBUG"))
    shown = exc if debug else None
    if traceback_text and os.environ.get("CONNECTSW_DEBUG"):  # a forked rule's, as text
        log.warning(
            'gate rule "%s" of plugin "%s" crashed: %s\n%s', name, plugin, what, traceback_text
        )
    else:
        log.warning('gate rule "%s" of plugin "%s" crashed: %s', name, plugin, what, exc_info=shown)
    return RuleResult(rule=name, passed=False, score=0.0, details=details)


def _place(rule: Any) -> str:
    """``file.py:LINE`` of a rule's ``evaluate`` (empty when Python cannot tell)."""
    try:
        fn = inspect.unwrap(type(rule).evaluate)
        return f"{os.path.basename(inspect.getsourcefile(fn) or '')}:{fn.__code__.co_firstlineno}"
    except (AttributeError, TypeError):
        return ""


def unfixable(gate: GateResult) -> dict[str, str]:
    """The failed rules of ``gate`` that no remediation round of the stage's agents can
    fix, each with why: ``"crashed"`` (a plugin's bug: it raised or returned no
    RuleResult) or ``"is not installed"`` (no loaded plugin provides it)."""
    found = {}
    for r in gate.rules:
        if not r.passed and r.details.startswith(CRASHED):
            found[r.rule] = "crashed"
        elif not r.passed and r.details == NOT_INSTALLED:
            found[r.rule] = "is not installed"
    return found


def remediation_feedback(gate: GateResult, round: int, rounds: int) -> str:
    """The feedback a failed gate sends back to the stage's agents: each failed rule's
    remediation and the first lines of its evidence."""
    parts = [f"Quality gate failed (automatic remediation {round} of {rounds}):"]
    for r in gate.rules:
        if r.passed:
            continue
        evidence = [line for line in r.details.splitlines() if line.strip()]
        shown = "\n    ".join(evidence[:FEEDBACK_EVIDENCE_LINES])
        parts.append(f"- {r.rule}: {r.remediation or 'fix what the evidence shows'}")
        if shown:
            parts.append(f"    {shown}")
    return "\n".join(parts)
