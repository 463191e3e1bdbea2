"""The JSON documents the CLI prints, with stages numbered as the text shows them.

One public convention: **stages are numbered from 1**, in text (``stage 2``) and in
``--json`` alike: a view's ``stage`` and ``gate.stage``, a listed execution's
``stage``, a plan's ``stages[].index`` and ``tasks[].stage``, an event's ``stage``.
Inside ConnectSW (the store, the engine, the models) a stage is its 0-based index
in ``plan.stages``; :func:`stage_number` is the one place that converts.
"""

from __future__ import annotations

from typing import Any

from connectsw.core.models import Event, ExecutionView


def stage_number(index: int) -> int:
    """The public number (from 1) of the stage at 0-based ``index`` in ``plan.stages``."""
    return index + 1


def view_json(view: ExecutionView) -> dict[str, Any]:
    """``view.to_api()`` with its stage numbers public."""
    data = view.to_api()
    data["stage"] = stage_number(view.stage)
    if view.gate is not None:
        data["gate"]["stage"] = stage_number(view.gate.stage)
    return data


def plan_json(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan's ``to_api()`` dict with its stage numbers public (changed in place)."""
    for stage in plan.get("stages", []):
        stage["index"] = stage_number(stage["index"])
    for task in plan.get("tasks", []):
        task["stage"] = stage_number(task["stage"])
    return plan


def event_json(event: Event) -> dict[str, Any]:
    """An event as ``watch --json`` prints it, with its stage number public."""
    data = event.to_api()
    if event.stage is not None:
        data["stage"] = stage_number(event.stage)
    return data
