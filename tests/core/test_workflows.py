"""Built-in workflows: what they plan, and that they claim no work they did not do.

Issue 5, fault 11: without a model, ``new feature`` and ``fix`` used to rewrite
the new-product scaffold and report "Feature implemented and tested". The
implementation task now fails, saying what was not done and why, and so does the
execution.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from connectsw.core.engine import Engine
from connectsw.core.models import Decision, ExecutionStatus, Request, TaskStatus
from connectsw.core.planner import Planner


def test_feature_and_fix_plans_name_the_change() -> None:
    _, feature = Planner().plan(Request(command="new feature", args=["export reviews as CSV"]))
    assert feature.task("implement").with_ == {"feature": "export reviews as CSV"}
    _, fix = Planner().plan(Request(command="fix", args=["items list is empty"]))
    assert fix.task("fix").with_ == {"bug": "items list is empty"}
    _, product = Planner().plan(Request(command="new product", args=["Team chat"]))
    assert product.task("backend").with_ == {}  # the scaffold: work it really does


@pytest.mark.parametrize(
    ("command", "text", "approvals", "task", "verb"),
    [
        ("new feature", "export reviews as CSV", 1, "implement", "implement"),
        ("fix", "items list is empty after restart", 0, "fix", "fix"),
    ],
)
def test_a_change_without_a_model_fails_the_execution(
    engine: Engine,
    tmp_path: Path,
    command: str,
    text: str,
    approvals: int,
    task: str,
    verb: str,
) -> None:
    workspace = tmp_path / "ws"
    ex = engine.submit(Request(command=command, args=[text]), workspace)
    done = engine.run(ex.id)
    for _ in range(approvals):
        engine.decide(ex.id, Decision.APPROVE)
        done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    assert done.error is not None
    assert done.error.startswith(
        f"task {task!r} failed: backend-engineer cannot {verb} {text!r} without a model"
    )
    assert "nothing was changed" in done.error
    states = engine.task_states(done)
    assert states[task] is TaskStatus.FAILED
    assert all(s is not TaskStatus.SUCCEEDED for t, s in states.items() if t in ("qa", "verify"))
    assert not (workspace / "service").exists()  # no scaffold passed off as the change
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout
    assert f"{task}:" not in log
