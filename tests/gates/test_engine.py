"""evaluate_stage: combines the verdicts of the rules a stage names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectsw.core.models import Execution, Plan, Request, RuleResult, Stage, TaskSpec
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.engine import evaluate_stage
from connectsw.gates.rules import TestsPassRule
from connectsw.plugins.registry import Registries, Registry, get_registries


class Fixed(GateRule):
    def __init__(self, name: str, passed: bool = True, score: float = 1.0) -> None:
        self.name = name
        self.passed = passed
        self.score = score
        self.calls = 0

    def evaluate(self, ctx: GateContext) -> RuleResult:
        self.calls += 1
        return RuleResult(rule=self.name, passed=self.passed, score=self.score)


class Crashing(GateRule):
    name = "crashes"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        raise RuntimeError("boom")


class CrashingApplies(GateRule):
    name = "crashes-early"

    def applies(self, ctx: GateContext) -> bool:
        raise ValueError("cannot tell")


class NotApplicable(Fixed):
    def applies(self, ctx: GateContext) -> bool:
        return False


def registries(*rules: Any) -> Registries:
    regs = Registries(
        agents=Registry("agent", ("run",)),
        workflows=Registry("workflow", ("claims", "decompose")),
        gates=Registry("gate rule", ("applies", "evaluate")),
    )
    for rule in rules:
        regs.gates.add(rule, "test")
    return regs


def context(workspace: Path, gates: list[str], index: int = 0, **config: Any) -> GateContext:
    stage = Stage(index=index, name="s", task_ids=["a"], gates=gates)
    plan = Plan(name="p", workflow="test", tasks=[TaskSpec(id="a", agent="noop")], stages=[stage])
    execution = Execution(request=Request(command="run"), plan=plan, workspace=str(workspace))
    return GateContext(execution=execution, stage=stage, workspace=workspace, config=config)


def test_no_rules_passes(tmp_path: Path) -> None:
    result = evaluate_stage(context(tmp_path, [], index=2), registries())
    assert result.passed
    assert result.score == 1.0
    assert result.rules == []
    assert result.stage == 2


def test_unknown_rule_is_a_failed_result(tmp_path: Path) -> None:
    result = evaluate_stage(context(tmp_path, ["ok", "no-such-rule"]), registries(Fixed("ok")))
    assert not result.passed
    unknown = result.rules[1]
    assert unknown.rule == "no-such-rule"
    assert not unknown.passed
    assert unknown.score == 0.0
    assert "not installed" in unknown.details
    assert "no-such-rule" in unknown.remediation
    assert result.rules[0].passed
    assert result.score == 0.5


@pytest.mark.parametrize(
    ("rule", "text"),
    [(Crashing(), "rule crashed: RuntimeError: boom"), (CrashingApplies(), "ValueError")],
)
def test_crashing_rule_is_a_failed_result(tmp_path: Path, rule: GateRule, text: str) -> None:
    after = Fixed("after")
    result = evaluate_stage(context(tmp_path, [rule.name, "after"]), registries(rule, after))
    assert not result.passed
    assert result.rules[0].rule == rule.name
    assert not result.rules[0].passed
    assert result.rules[0].score == 0.0
    assert text in result.rules[0].details
    assert after.calls == 1  # the other rules still run


def test_not_applicable_rule_passes_without_evaluating(tmp_path: Path) -> None:
    rule = NotApplicable("quiet", passed=False, score=0.0)
    result = evaluate_stage(context(tmp_path, ["quiet"]), registries(rule))
    assert result.passed
    assert result.rules[0].details == "not applicable"
    assert result.rules[0].score == 1.0
    assert rule.calls == 0


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([1.0, 0.5, 0.0], 0.5), ([1.0, 0.0, 0.0], 0.333), ([0.9, 0.8], 0.85), ([1.0], 1.0)],
)
def test_score_is_the_average(tmp_path: Path, scores: list[float], expected: float) -> None:
    rules = [Fixed(f"r{i}", passed=s == 1.0, score=s) for i, s in enumerate(scores)]
    result = evaluate_stage(context(tmp_path, [r.name for r in rules]), registries(*rules))
    assert result.score == expected
    assert result.passed is all(s == 1.0 for s in scores)
    assert [r.rule for r in result.rules] == [r.name for r in rules]


def test_tests_pass_registered_and_not_applicable_without_tests(tmp_path: Path) -> None:
    regs = get_registries()
    assert isinstance(regs.gates.get("tests-pass"), TestsPassRule)
    (tmp_path / "app.py").write_text("print('hi')\n")
    result = evaluate_stage(context(tmp_path, ["tests-pass"]), regs)
    assert result.passed
    assert result.rules[0].rule == "tests-pass"
    assert result.rules[0].details == "not applicable"


def test_tests_pass_failing_fails_the_gate(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "import unittest\n\nclass T(unittest.TestCase):\n"
        "    def test_x(self):\n        self.assertEqual(1, 2)\n"
    )
    result = evaluate_stage(context(tmp_path, ["tests-pass"]), get_registries())
    assert not result.passed
    assert result.score == 0.0
    assert "Fix the failing tests" in result.rules[0].remediation
