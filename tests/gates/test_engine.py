"""evaluate_stage: combines the verdicts of the rules a stage names."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from connectsw.core.errors import PluginError
from connectsw.core.models import Execution, Plan, Request, RuleResult, Stage, TaskSpec
from connectsw.gates.base import GateContext, GateRule
from connectsw.gates.detect import TRAITS
from connectsw.gates.engine import evaluate_stage, unfixable
from connectsw.gates.rules import TestsPassRule
from connectsw.plugins.registry import Registries, Registry, get_registries


class Fixed(GateRule):
    isolation = "thread"  # counts its calls in this process (a forked rule's count is lost)

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


class CrashingHere(Crashing):
    """Crashing in the engine's process, where the exception (and its traceback) is seen."""

    isolation = "thread"


class CrashingApplies(GateRule):
    name = "crashes-early"

    def applies(self, ctx: GateContext) -> bool:
        raise ValueError("cannot tell")


class Exits(GateRule):
    """Calls sys.exit in evaluate (trial 7, F11: the command then exited 0, nothing done)."""

    name = "exits"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        sys.exit(0)


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
    [
        (Crashing(), "rule crashed: RuntimeError: boom"),
        (CrashingApplies(), "ValueError"),
        (Exits(), "rule crashed: SystemExit: 0 (test_engine.py:"),
    ],
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


# -- rule sets per checkpoint type (reference §2.3 QUALITY_RULES) ---------------------------


def _cp_context(tmp_path: Path, gates: list[str], cp: str | None, **config: Any) -> GateContext:
    from connectsw.core.models import CheckpointSpec

    checkpoint = CheckpointSpec(type=cp, question="ok?") if cp else None
    stage = Stage(index=1, name="s", task_ids=["a"], gates=gates, checkpoint=checkpoint)
    plan = Plan(name="p", workflow="test", tasks=[TaskSpec(id="a", agent="noop")], stages=[stage])
    execution = Execution(request=Request(command="run"), plan=plan, workspace=str(tmp_path))
    return GateContext(execution=execution, stage=stage, workspace=tmp_path, config=config)


def test_a_checkpoint_type_adds_its_rule_set(tmp_path: Path) -> None:
    from connectsw.gates.engine import rules_for

    sets = {"review": {"rules": ["b", "a", "c"], "not_run_passes": []}}
    ctx = _cp_context(tmp_path, ["a"], "review", rule_sets=sets)
    assert rules_for(ctx.stage, ctx.config) == ["a", "b", "c"]  # the stage's first, once each
    regs = registries(Fixed("a"), Fixed("b"), Fixed("c", passed=False, score=0.0))
    result = evaluate_stage(ctx, regs)
    assert [r.rule for r in result.rules] == ["a", "b", "c"]
    assert not result.passed and result.score == 0.667
    other = _cp_context(tmp_path, ["a"], "other", rule_sets=sets)
    assert [r.rule for r in evaluate_stage(other, regs).rules] == ["a"]
    plain = _cp_context(tmp_path, [], None, rule_sets=sets)
    assert evaluate_stage(plain, regs).rules == []


class Absent(GateRule):
    name = "needs-tool"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        return self.not_run("tool not installed", "install the tool")


def test_not_run_passes_only_where_the_rule_set_says(tmp_path: Path) -> None:
    allowed = {"ui": {"rules": ["needs-tool", "ok"], "not_run_passes": ["needs-tool"]}}
    ctx = _cp_context(tmp_path, [], "ui", rule_sets=allowed)
    result = evaluate_stage(ctx, registries(Absent(), Fixed("ok", score=0.5)))
    assert result.passed
    assert result.rules[0].details == "not run: tool not installed (passes: the rule set allows it)"
    assert result.score == 0.5  # the rule that did not run does not count
    strict = _cp_context(tmp_path, ["needs-tool"], None)
    failed = evaluate_stage(strict, registries(Absent()))
    assert not failed.passed and failed.rules[0].remediation == "install the tool"


class WantsPages(Fixed):
    applies_to = ("page",)


def test_applies_to_declares_the_traits_a_rule_judges(tmp_path: Path) -> None:
    rule = WantsPages("pages")
    regs = registries(rule)
    assert evaluate_stage(context(tmp_path, ["pages"]), regs).rules[0].details == "not applicable"
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<h1>x</h1>")
    assert evaluate_stage(context(tmp_path, ["pages"]), regs).rules[0].details == ""
    assert rule.calls == 1


def test_remediation_feedback_names_rules_remediation_and_evidence() -> None:
    from connectsw.core.models import GateResult
    from connectsw.gates.engine import remediation_feedback

    gate = GateResult(
        stage=0,
        passed=False,
        score=0.5,
        rules=[
            RuleResult(rule="ok", passed=True),
            RuleResult(
                rule="build",
                passed=False,
                score=0.0,
                details="$ python -m compileall .\n" + "".join(f"line {i}\n" for i in range(20)),
                remediation="Fix the syntax error.",
            ),
        ],
    )
    text = remediation_feedback(gate, 1, 2)
    assert text.splitlines()[0] == "Quality gate failed (automatic remediation 1 of 2):"
    assert "- build: Fix the syntax error." in text
    assert "$ python -m compileall ." in text and "line 4" in text and "line 5" not in text
    assert "- ok" not in text


class ForgetsReturn(GateRule):
    name = "forgets-return"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        self.passed("looks fine")  # the author forgot the return
        return None  # type: ignore[return-value]


class ReturnsTrue(GateRule):
    name = "returns-true"

    def evaluate(self, ctx: GateContext) -> RuleResult:
        return True  # type: ignore[return-value]


@pytest.mark.parametrize(("rule", "kind"), [(ForgetsReturn(), "NoneType"), (ReturnsTrue(), "bool")])
def test_a_rule_that_returns_no_rule_result_crashed(
    tmp_path: Path, rule: GateRule, kind: str
) -> None:
    after = Fixed("after")
    result = evaluate_stage(context(tmp_path, [rule.name, "after"]), registries(rule, after))
    assert not result.passed
    crashed = result.rules[0]
    assert crashed.rule == rule.name and not crashed.passed and crashed.score == 0.0
    assert crashed.details.startswith(f"rule crashed: returned {kind}, not RuleResult")
    assert 'plugin "test"' in crashed.details
    assert f"test_engine.py:{type(rule).evaluate.__code__.co_firstlineno}" in crashed.details
    assert unfixable(result) == {rule.name: "crashed"}
    assert after.calls == 1


def test_a_crash_logs_one_line_naming_the_plugin_and_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONNECTSW_DEBUG", raising=False)
    with caplog.at_level("WARNING", logger="connectsw.gates"):
        result = evaluate_stage(context(tmp_path, ["crashes"]), registries(Crashing()))
    assert "RuntimeError: boom" in result.rules[0].details
    assert re.search(r"test_engine\.py:\d+", result.rules[0].details), result.rules[0].details
    [record] = caplog.records
    assert record.exc_info is None
    message = record.getMessage()
    assert "\n" not in message and 'plugin "test"' in message and '"crashes"' in message
    assert "RuntimeError: boom" in message and re.search(r"test_engine\.py:\d+", message)
    caplog.clear()
    monkeypatch.setenv("CONNECTSW_DEBUG", "1")
    with caplog.at_level("WARNING", logger="connectsw.gates"):
        evaluate_stage(context(tmp_path, ["crashes"]), registries(CrashingHere()))
    assert caplog.records[0].exc_info is not None  # a thread-isolated rule's traceback


def test_unfixable_names_crashed_and_missing_rules_only(tmp_path: Path) -> None:
    regs = registries(Crashing(), Fixed("bad", passed=False, score=0.0))
    result = evaluate_stage(context(tmp_path, ["crashes", "bad", "no-such-rule"]), regs)
    assert unfixable(result) == {"crashes": "crashed", "no-such-rule": "is not installed"}
    ordinary = evaluate_stage(context(tmp_path, ["bad"]), regs)
    assert not ordinary.passed and unfixable(ordinary) == {}


def test_applies_to_must_name_known_traits() -> None:
    class Typo(GateRule):
        name = "typo-rule"
        applies_to = ("python", "pyhton")

    with pytest.raises(PluginError) as raised:
        registries(Typo())
    message = str(raised.value)
    assert "\n" not in message
    assert 'Plugin "test"' in message and '"typo-rule"' in message and "'pyhton'" in message
    assert all(trait in message for trait in TRAITS)

    class NotATuple(GateRule):
        name = "str-rule"
        applies_to = "python"  # type: ignore[assignment]

    with pytest.raises(PluginError, match="applies_to"):
        registries(NotATuple())
