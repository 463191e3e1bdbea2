"""A gate run on demand (``connectsw gates check``): on a workspace, or on an execution's stage.

Nothing is recorded: the execution's state and its gate results are left as they are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from connectsw.core.errors import NotFound, PlanError
from connectsw.core.models import (
    CheckpointSpec,
    Execution,
    GateResult,
    Plan,
    Request,
    Stage,
    TaskResult,
)
from connectsw.core.textfiles import check_path
from connectsw.core.workspace import WorkspaceError
from connectsw.gates.base import GateContext
from connectsw.gates.engine import evaluate_stage, rules_for
from connectsw.plugins.registry import Registries


def _known(names: list[str], registries: Registries) -> None:
    unknown = [n for n in names if n not in registries.gates]
    if unknown:
        known = ", ".join(sorted(registries.gates.items)) or "none"
        raise registries.unknown_error(
            "gate rule", unknown[0], f"unknown gate rule {unknown[0]!r} (known: {known})"
        )


def check_workspace(
    workspace: Path,
    config: dict[str, Any],
    registries: Registries,
    *,
    rules: list[str] | None = None,
    checkpoint: str | None = None,
    artifact_dir: Path | None = None,
) -> GateResult:
    """Run a gate on ``workspace``: the named ``rules``, else the rule set of the
    ``checkpoint`` type, else every registered rule. Raises PlanError for an unknown
    rule or a checkpoint type with no rule set, WorkspaceError (exit 2, as for ``run
    -w``) for a workspace that is missing or not a directory."""
    with check_path(f"workspace {workspace}", WorkspaceError):  # core/textfiles.py's rule
        if not workspace.is_dir():
            reason = "not a directory" if workspace.exists() else "not found"
            raise WorkspaceError(f"workspace {workspace}: {reason}")
    cp = CheckpointSpec(type=checkpoint, question="") if checkpoint else None
    if checkpoint and not rules:
        stage = Stage(index=0, name="check", task_ids=[], checkpoint=cp)
        if not rules_for(stage, config):
            sets = ", ".join(sorted(config.get("rule_sets") or {})) or "none"
            raise PlanError(f"no rule set for checkpoint type {checkpoint!r} (rule sets: {sets})")
    names = list(rules or [])
    if not names and not checkpoint:
        names = list(registries.gates.items)
    _known(names, registries)
    stage = Stage(index=0, name="check", task_ids=[], checkpoint=cp, gates=names)
    plan = Plan(name="gates-check", workflow="check", tasks=[], stages=[stage])
    execution = Execution(
        request=Request(command="gates check"), plan=plan, workspace=str(workspace)
    )
    ctx = GateContext(
        execution=execution,
        stage=stage,
        workspace=workspace,
        config=config,
        artifact_dir=artifact_dir,
    )
    return evaluate_stage(ctx, registries)


def check_stage(
    execution: Execution,
    stage_index: int,
    task_results: list[TaskResult],
    config: dict[str, Any],
    registries: Registries,
    *,
    artifact_dir: Path | None = None,
) -> GateResult:
    """Run the gate of ``execution``'s stage ``stage_index`` (0-based) on its workspace,
    with each of the stage's tasks' latest results. Raises NotFound for no such stage."""
    stages = execution.plan.stages
    if not 0 <= stage_index < len(stages):
        raise NotFound(
            f"execution {execution.id} has no stage {stage_index + 1} (it has {len(stages)})"
        )
    stage = stages[stage_index]
    latest: dict[str, TaskResult] = {}
    for r in task_results:
        if r.task_id in stage.task_ids:
            prev = latest.get(r.task_id)
            if prev is None or (r.round, r.attempt) >= (prev.round, prev.attempt):
                latest[r.task_id] = r
    ctx = GateContext(
        execution=execution,
        stage=stage,
        workspace=Path(execution.workspace),
        results=latest,
        config=config,
        artifact_dir=artifact_dir,
    )
    return evaluate_stage(ctx, registries)


def check_dir(data_dir: Path) -> Path:
    """Where a check's files (screenshots) are kept: ``DATA_DIR/gates/check-<time>``."""
    return data_dir.expanduser() / "gates" / f"check-{time.strftime('%Y%m%dT%H%M%S')}"
