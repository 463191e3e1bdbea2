"""Models: the API's camelCase JSON, Plan round-trips, unknown keys and next_checkpoint."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from connectsw.core.models import (
    Artifact,
    CheckpointSpec,
    CheckpointView,
    ExecuteResponse,
    Execution,
    ExecutionStatus,
    ExecutionView,
    GateResult,
    Plan,
    Request,
    RuleResult,
    Stage,
    TaskSpec,
    TaskStatus,
)


def make_plan() -> Plan:
    """Three stages: checkpoint, no checkpoint, checkpoint (with a gate)."""
    return Plan(
        name="release-notes",
        workflow="task-graph",
        estimated_duration="5m",
        tasks=[
            TaskSpec(id="collect", agent="shell", with_={"command": "git log"}, stage=0),
            TaskSpec(id="draft", agent="noop", needs=["collect"], stage=1),
            TaskSpec(id="write", agent="product-manager", needs=["draft"], retries=2, stage=2),
        ],
        stages=[
            Stage(
                index=0,
                name="collected",
                task_ids=["collect"],
                checkpoint=CheckpointSpec(type="collected", question="Proceed?"),
            ),
            Stage(index=1, name="drafted", task_ids=["draft"]),
            Stage(
                index=2,
                name="written",
                task_ids=["write"],
                checkpoint=CheckpointSpec(type="written", question="Publish?"),
                gates=["tests-pass"],
            ),
        ],
    )


def make_execution(**kw: object) -> Execution:
    return Execution(
        request=Request(command="run", args=["graph.yaml"]), plan=make_plan(), workspace="/w", **kw
    )


def test_execute_response_matches_reference_shape() -> None:
    plan = make_plan()
    body = ExecuteResponse(
        execution_id="exec_0123456789ab",
        plan=plan,
        status=ExecutionStatus.AWAITING_CHECKPOINT,
        next_checkpoint="collected",
    ).to_api()
    assert set(body) == {"executionId", "plan", "status", "nextCheckpoint"}
    assert body["executionId"] == "exec_0123456789ab"
    assert body["status"] == "awaiting_checkpoint"
    assert body["nextCheckpoint"] == "collected"
    assert set(body["plan"]) == {
        "name",
        "workflow",
        "tasks",
        "stages",
        "estimatedDuration",
        "estimatedSeconds",  # the learning engine's p50, beside the reference's text
        "checkpoints",
    }
    assert body["plan"]["estimatedDuration"] == "5m"
    assert body["plan"]["checkpoints"] == [
        {"type": "collected", "question": "Proceed?", "options": list(_default_options())},
        {"type": "written", "question": "Publish?", "options": list(_default_options())},
    ]
    stage = body["plan"]["stages"][0]
    assert set(stage) == {"index", "name", "taskIds", "checkpoint", "gates"}
    assert stage["taskIds"] == ["collect"]
    task = body["plan"]["tasks"][0]
    assert set(task) == {
        "id",
        "agent",
        "title",
        "with",
        "needs",
        "retries",
        "timeout",
        "stage",
        "learned",  # what the history changed (core/learning.py), None until planned
    }
    assert task["with"] == {"command": "git log"}
    json.dumps(body)  # JSON-ready


def _default_options() -> list[str]:
    return CheckpointSpec(type="x", question="y").options


def test_no_snake_case_keys_anywhere_in_api_json() -> None:
    view = ExecutionView(
        execution_id="exec_1",
        status=ExecutionStatus.GATE_FAILED,
        stage=1,
        round=2,
        next_checkpoint="written",
        checkpoint=CheckpointView(
            type="written", artifacts=[Artifact(path="a.md")], question="q", options=["approve"]
        ),
        gate=GateResult(
            stage=1, passed=False, score=0.0, rules=[RuleResult(rule="r", passed=False)]
        ),
        tasks={"collect": TaskStatus.SUCCEEDED},
        workspace="/w",
    ).to_api()
    assert view["executionId"] == "exec_1"
    assert view["nextCheckpoint"] == "written"
    assert view["tasks"] == {"collect": "succeeded"}  # dict keys are data, not renamed

    free_form = {"tasks", "with", "outputs", "data", "gitInfo"}  # their keys are data

    def keys(obj: object) -> list[str]:
        found: list[str] = []
        if isinstance(obj, dict):
            for key, value in obj.items():
                found.append(key)
                if not (key in free_form and isinstance(value, dict)):
                    found.extend(keys(value))
        elif isinstance(obj, list):
            for item in obj:
                found.extend(keys(item))
        return found

    found = keys(view) + keys(make_execution().to_api())
    assert found
    assert not [k for k in found if "_" in k]
    execution = make_execution().to_api()
    for key in ("createdAt", "updatedAt", "heartbeatAt", "request", "plan", "workspace"):
        assert key in execution


def test_task_spec_accepts_with_and_with_underscore() -> None:
    a = TaskSpec.model_validate({"id": "a", "agent": "shell", "with": {"command": "true"}})
    b = TaskSpec(id="a", agent="shell", with_={"command": "true"})
    assert a == b
    assert a.with_ == {"command": "true"}


def test_plan_json_round_trip_with_computed_checkpoints() -> None:
    plan = make_plan()
    data = plan.to_api()
    assert "checkpoints" in data
    again = Plan.model_validate(data)
    assert again == plan
    assert again.checkpoints == plan.checkpoints
    from_json = Plan.model_validate_json(plan.model_dump_json(by_alias=True))
    assert from_json == plan
    # snake_case JSON (how the store persists) loads too
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_execution_json_round_trip() -> None:
    execution = make_execution(status=ExecutionStatus.EXECUTING, stage=1, feedback=["more"])
    assert Execution.model_validate(execution.to_api()) == execution
    assert Execution.model_validate_json(execution.model_dump_json()) == execution


def test_checkpoints_follow_stages() -> None:
    plan = make_plan()
    assert [c.type for c in plan.checkpoints] == ["collected", "written"]
    assert [t.id for t in plan.stage_tasks(2)] == ["write"]
    assert plan.task("draft").needs == ["collect"]
    with pytest.raises(KeyError):
        plan.task("nope")


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (TaskSpec, {"id": "a", "agent": "shell", "colour": "red"}),
        (Request, {"command": "run", "argz": []}),
        (CheckpointSpec, {"type": "t", "question": "q", "extra": 1}),
        (Artifact, {"path": "a", "size": 3}),
    ],
)
def test_unknown_keys_refused(model: type, data: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_key_in_plan_refused() -> None:
    data = make_plan().to_api()
    data["bogus"] = True
    with pytest.raises(ValidationError):
        Plan.model_validate(data)
    data = make_plan().to_api()
    data["stages"][0]["colour"] = "red"
    with pytest.raises(ValidationError):
        Plan.model_validate(data)


def test_next_checkpoint() -> None:
    assert make_execution(stage=0).next_checkpoint == "collected"
    # Stage 1 has no checkpoint: the next one is stage 2's.
    assert make_execution(stage=1).next_checkpoint == "written"
    assert (
        make_execution(stage=2, status=ExecutionStatus.AWAITING_CHECKPOINT).next_checkpoint
        == "written"
    )
    assert make_execution(stage=2, status=ExecutionStatus.GATE_FAILED).next_checkpoint == "written"
    assert make_execution(stage=2, status=ExecutionStatus.COMPLETED).next_checkpoint is None
    assert make_execution(stage=0, status=ExecutionStatus.CANCELLED).next_checkpoint is None


def test_next_checkpoint_none_after_last_checkpoint() -> None:
    plan = make_plan()
    plan.stages[2].checkpoint = None
    execution = Execution(request=Request(command="run"), plan=plan, workspace="/w", stage=1)
    assert execution.next_checkpoint is None
    execution.stage = 0
    assert execution.next_checkpoint == "collected"


def test_status_finished() -> None:
    finished = {s for s in ExecutionStatus if s.finished}
    assert finished == {ExecutionStatus.COMPLETED, ExecutionStatus.CANCELLED}


def test_execution_ids_are_unique_and_prefixed() -> None:
    a, b = make_execution(), make_execution()
    assert a.id != b.id
    assert a.id.startswith("exec_")
    assert a.created_at.tzinfo is not None


def test_request_text_and_gate_remediation() -> None:
    assert Request(command="new product", args=["  AI", "reviewer "]).text == "AI reviewer"
    gate = GateResult(
        stage=0,
        passed=False,
        score=0.5,
        rules=[
            RuleResult(rule="a", passed=False, remediation="Fix tests."),
            RuleResult(rule="b", passed=True, remediation="ignored"),
            RuleResult(rule="c", passed=False, remediation="Add docs."),
        ],
    )
    assert gate.remediation == "Fix tests. Add docs."


# -- TaskSpec durations (issue 5, fault 6): plans from any source are safe --------


def test_task_spec_huge_timeout_is_seven_days() -> None:
    assert TaskSpec(id="a", agent="noop", timeout=1e10).timeout == 604800.0
    assert TaskSpec.model_validate({"id": "a", "agent": "noop", "timeout": 1e300}).timeout == 604800
    assert TaskSpec(id="a", agent="noop", timeout=30).timeout == 30
    assert TaskSpec(id="a", agent="noop", timeout=0).timeout == 0  # the engine's default
    assert TaskSpec(id="a", agent="noop").timeout is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "nan", -1, True])
def test_task_spec_refuses_bad_timeouts(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"id": "a", "agent": "noop", "timeout": value})
    assert info.value.errors()[0]["loc"][0] == "timeout"


@pytest.mark.parametrize("value", [-1, 21, True, 1.5])
def test_task_spec_retries_range(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        TaskSpec.model_validate({"id": "a", "agent": "noop", "retries": value})
    assert info.value.errors()[0]["loc"][0] == "retries"
    assert TaskSpec(id="a", agent="noop", retries=20).retries == 20


def test_stored_plan_json_with_huge_timeout_reads_back() -> None:
    task = TaskSpec(id="a", agent="noop", timeout=1e10)
    again = TaskSpec.model_validate(json.loads(json.dumps(task.to_api())))
    assert again.timeout == 604800.0


# -5 and 1.5: outside the documented 0-1 (trial 8: -5 gave "Gate passed (score -2)").
@pytest.mark.parametrize("score", [float("nan"), float("inf"), -5.0, 1.5])
def test_a_rule_score_json_cannot_represent_is_refused(score: float) -> None:
    from pydantic import ValidationError

    from connectsw.core.models import RuleResult

    with pytest.raises(ValidationError):
        RuleResult(rule="r", passed=True, score=score)


def test_a_rule_text_with_a_lone_surrogate_is_made_storable() -> None:
    """Trial 5, item 11: a text with a surrogate made the whole record unwritable."""
    from connectsw.core.models import GateResult, RuleResult

    rule = RuleResult(rule="r", passed=False, details="file caf\udce9.txt", remediation="x\udcff")
    assert rule.details == "file caf\ufffd.txt" and rule.remediation == "x\ufffd"
    GateResult(stage=1, passed=False, score=0.0, rules=[rule]).model_dump_json()


def test_user_text_that_is_not_utf8_is_refused() -> None:
    from connectsw.core.errors import InvalidInput
    from connectsw.core.models import check_user_text

    with pytest.raises(InvalidInput, match="^the feedback is not valid UTF-8$"):
        check_user_text("feedback", "caf\udce9")
    check_user_text("feedback", "café")
