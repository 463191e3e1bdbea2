"""Request → intent → plan: the first workflow that claims the intent decomposes it.

Commands come from the workflows: each declares the command words it answers
(``commands = ("release",)``) and its intent ``kind``; ``connectsw release v1.2``
is then the intent ``release`` with subject ``v1.2``. An exception in a
workflow's ``claims`` or ``decompose`` is a :class:`PluginError` naming the
plugin, its entry point and how to leave it out (exit 3), never an internal error.

Every plan, from a built-in workflow, a third-party one or a graph file, is
validated here before anything runs: unique ids, known dependencies, no cycle,
known agents with valid input, consistent stages and known gate rules. An
unknown agent, gate rule or workflow names the plugins that failed to load and
may provide it, and how to leave them out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from connectsw.core.errors import ConnectSWError, PlanError, PluginError, describe_validation_error
from connectsw.core.models import (
    MAX_USER_TEXT,
    CheckpointSpec,
    Intent,
    Plan,
    Request,
    Stage,
    TaskSpec,
)
from connectsw.plugins.manager import (
    call_plugin,
    is_plugin_failure,
    plugin_code_error,
    strict_enabled,
)
from connectsw.plugins.output import plugin_output_to_stderr
from connectsw.plugins.registry import Registries, get_registries, workflow_kind

log = logging.getLogger("connectsw.planner")

TASK_GRAPH = "task_graph"
"""The intent kind whose subject is a task-graph file (``connectsw run FILE``)."""

MAX_REQUEST_TEXT = MAX_USER_TEXT
"""Characters: the longest request description (``new product "..."``, ``fix "..."``)."""


def unknown_command(command: str, registries: Registries) -> ConnectSWError:
    """The error for a command no workflow claims: the known ones, and the plugins
    (failed, or left out by ``CONNECTSW_LOAD_PLUGINS``) that may provide it; a
    :class:`PluginError` when a failed plugin may, else a :class:`PlanError`."""
    known = ", ".join(sorted(registries.workflow_commands()))
    words = " ".join(command.lower().split())
    return registries.unknown_error(
        "command", words, f"unknown command {command!r} (known: {known})"
    )


def parse_intent(request: Request, registries: Registries | None = None) -> Intent:
    """Turn a request's command and text into an :class:`Intent`.

    The command words (case and spacing aside) are looked up in the commands the
    registered workflows declare; the intent's kind is that workflow's ``kind``
    (see :func:`connectsw.plugins.registry.workflow_kind`).

    Raises:
        PlanError: an unknown command, an empty description, or one longer than
            :data:`MAX_REQUEST_TEXT` characters (the text is not repeated).
    """
    registries = registries or get_registries()
    command = " ".join(request.command.lower().split())
    workflow = registries.workflow_commands().get(command)
    if workflow is None:
        raise unknown_command(request.command, registries)
    kind = workflow_kind(workflow)
    subject = request.text
    if not subject:
        raise PlanError(f"'{command}' needs a description, e.g. {command} \"...\"")
    if len(subject) > MAX_REQUEST_TEXT:
        raise PlanError(
            f"the description of '{command}' is {len(subject)} characters long; at most"
            f" {MAX_REQUEST_TEXT} are allowed (put the details in a file in the workspace)"
        )
    if kind == TASK_GRAPH:
        return Intent(kind=kind, subject=subject, request=request, source_file=subject)
    return Intent(kind=kind, subject=subject, request=request)


def slugify(text: str, max_length: int = 48) -> str:
    """``"AI-powered code reviewer"`` → ``"ai-powered-code-reviewer"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "project"


@dataclass
class CheckpointAt:
    """A checkpoint placed once ``after`` (and everything they need) has run."""

    after: Sequence[str]
    checkpoint: CheckpointSpec
    gates: Sequence[str] = ()
    name: str = ""


def build_plan(
    name: str,
    workflow: str,
    tasks: list[TaskSpec],
    checkpoints: Sequence[CheckpointAt] = (),
    final_gates: Sequence[str] = (),
    estimated_duration: str | None = None,
) -> Plan:
    """Cut ``tasks`` into stages at ``checkpoints`` (in order) and validate ids and edges.

    Stage *k* holds the tasks that checkpoint *k* waits for, with everything they
    need, that no earlier stage holds; tasks left over form a last stage with no
    checkpoint (gated by ``final_gates``).
    """
    by_id = _index(tasks)
    order = _topological_order(tasks, by_id)
    assigned: dict[str, int] = {}
    stages: list[Stage] = []
    for k, cp in enumerate(checkpoints):
        unknown = [t for t in cp.after if t not in by_id]
        if unknown:
            raise PlanError(f"checkpoint {k + 1} waits for unknown task {unknown[0]!r}")
        members = _ancestors(cp.after, by_id) - assigned.keys()
        if not members:
            raise PlanError(f"checkpoint {k + 1} adds no task that an earlier one did not cover")
        for tid in members:
            assigned[tid] = k
        stages.append(
            Stage(
                index=k,
                name=cp.name or cp.checkpoint.type,
                task_ids=[t for t in order if t in members],
                checkpoint=cp.checkpoint,
                gates=list(cp.gates),
            )
        )
    rest = [t for t in order if t not in assigned]
    if rest or not stages:
        k = len(stages)
        for tid in rest:
            assigned[tid] = k
        stages.append(Stage(index=k, name="final", task_ids=rest, gates=list(final_gates)))
    elif final_gates:
        stages[-1].gates.extend(g for g in final_gates if g not in stages[-1].gates)
    staged = [t.model_copy(update={"stage": assigned[t.id]}) for t in tasks]
    return Plan(
        name=name,
        workflow=workflow,
        tasks=staged,
        stages=stages,
        estimated_duration=estimated_duration,
    )


def _index(tasks: Sequence[TaskSpec]) -> dict[str, TaskSpec]:
    by_id: dict[str, TaskSpec] = {}
    for t in tasks:
        if t.id in by_id:
            raise PlanError(f"task id {t.id!r} is used twice")
        by_id[t.id] = t
    for t in tasks:
        for dep in t.needs:
            if dep not in by_id:
                raise PlanError(f"task {t.id!r} needs unknown task {dep!r}")
            if dep == t.id:
                raise PlanError(f"task {t.id!r} needs itself")
    return by_id


def _topological_order(tasks: Sequence[TaskSpec], by_id: dict[str, TaskSpec]) -> list[str]:
    """Plan order that respects ``needs``; a cycle is a :class:`PlanError` naming it."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[str] = []
    for root in tasks:
        if root.id in state:
            continue
        stack: list[tuple[str, int]] = [(root.id, 0)]
        path: list[str] = []
        while stack:
            tid, i = stack.pop()
            if i == 0:
                state[tid] = 1
                path.append(tid)
            needs = by_id[tid].needs
            if i < len(needs):
                stack.append((tid, i + 1))
                dep = needs[i]
                if state.get(dep) == 1:
                    cycle = path[path.index(dep) :] + [dep]
                    raise PlanError(
                        "dependency cycle (task -> a task it needs): " + " -> ".join(cycle)
                    )
                if dep not in state:
                    stack.append((dep, 0))
            else:
                state[tid] = 2
                path.pop()
                order.append(tid)
    return order


def _ancestors(ids: Sequence[str], by_id: dict[str, TaskSpec]) -> set[str]:
    seen: set[str] = set()
    todo = list(ids)
    while todo:
        tid = todo.pop()
        if tid not in seen:
            seen.add(tid)
            todo.extend(by_id[tid].needs)
    return seen


def validate_plan(plan: Plan, registries: Registries) -> Plan:
    """Check a plan against the registered agents and gate rules; return it unchanged.

    Each task's ``with`` is validated by its agent's ``input_model`` strictly, as JSON
    is: ``count: "5"`` is not an integer (YAML's quotes are kept, not coerced away).
    """
    by_id = _index(plan.tasks)
    _topological_order(plan.tasks, by_id)
    known_agents = ", ".join(sorted(registries.agents.items))
    staged = {tid: s.index for s in plan.stages for tid in s.task_ids}
    for t in plan.tasks:
        agent = registries.agents.get(t.agent)
        if agent is None:
            raise registries.unknown_error(
                "agent",
                t.agent,
                f"task {t.id!r}: unknown agent {t.agent!r} (known: {known_agents})",
            )
        input_model = getattr(agent, "input_model", None)
        if input_model is not None:
            try:
                # Strict as JSON is (the graph's values are JSON values): a quoted number
                # is not a number, and 2.5 is not an integer; text is still a path or
                # an enum's value.
                # A third-party validator is bounded: one that blocks is the plugin's
                # error (exit 3), not a hang of every request (trial 8b, F3).
                call_plugin(
                    registries.agents.owners.get(t.agent, "?"),
                    f'agent "{t.agent}" input_model',
                    input_model.model_validate_json,
                    json.dumps(t.with_, default=str),
                    strict=True,
                )
            except PluginError:  # it did not return in time
                raise
            except ValidationError as exc:
                detail = describe_validation_error(exc, prefix="with.")
                raise PlanError(f"task {t.id!r} ({t.agent}): {detail}") from None
            except BaseException as exc:  # the plugin's validator itself broke
                if not is_plugin_failure(exc):
                    raise
                owner = registries.agents.owners.get(t.agent, "?")
                raise plugin_code_error(owner, f'agent "{t.agent}" input_model', exc) from exc
        if staged.get(t.id) != t.stage:
            raise PlanError(f"task {t.id!r} is not in exactly its stage {t.stage}")
        for dep in t.needs:
            if by_id[dep].stage > t.stage:
                raise PlanError(f"task {t.id!r} runs before task {dep!r} that it needs")
    if len(staged) != sum(len(s.task_ids) for s in plan.stages):
        raise PlanError("a task is listed in more than one stage")
    for s in plan.stages:
        for gate in s.gates:
            if gate not in registries.gates:
                known = ", ".join(sorted(registries.gates.items)) or "none"
                raise registries.unknown_error(
                    "gate rule",
                    gate,
                    f"stage {s.name!r}: unknown gate rule {gate!r} (known: {known})",
                )
    return plan


class Planner:
    """Chooses the workflow for an intent and returns its validated plan."""

    def __init__(self, registries: Registries | None = None) -> None:
        self.registries = registries or get_registries()

    def plan(self, request: Request, **options: Any) -> tuple[Intent, Plan]:
        """Decompose ``request``; ``options`` are passed to the workflow."""
        intent = parse_intent(request, self.registries)
        broken: PluginError | None = None
        for workflow in self.registries.workflows:
            try:
                claimed = self._call(workflow, "claims", intent)
            except PluginError as exc:
                # A workflow whose claims() raises cannot answer: the others still may
                # (one broken plugin fails only the requests it would have taken),
                # unless CONNECTSW_STRICT_PLUGINS makes any plugin problem an error.
                if strict_enabled():
                    raise
                broken = broken or exc
                continue
            if claimed:
                if broken is not None:
                    log.warning("%s; the request went to the next workflow", broken)
                plan = self._call(workflow, "decompose", intent, **options)
                if not isinstance(plan, Plan):
                    owner = self.registries.workflows.owners.get(workflow.name, "?")
                    raise plugin_code_error(
                        owner,
                        f'workflow "{workflow.name}" decompose',
                        TypeError(f"returned {type(plan).__name__}, not a Plan"),
                    )
                try:
                    return intent, validate_plan(plan, self.registries)
                except PlanError as exc:
                    if intent.source_file:
                        raise PlanError(f"{intent.source_file}: {exc}") from None
                    raise
        if broken is not None:
            raise broken
        owner_wf = self.registries.workflow_commands().get(" ".join(request.command.split()))
        if owner_wf is not None:  # its own command, and it turned the request down
            owner = self.registries.workflows.owners.get(owner_wf.name, "?")
            raise PluginError(
                f'plugin "{owner}": workflow "{owner_wf.name}" claims the command '
                f"{request.command!r} but its claims() refused the request (intent kind "
                f"{intent.kind!r}: set the workflow's kind, or make claims() accept it)"
            )
        raise self.registries.unknown_error(
            "workflow", intent.kind, f"no workflow handles {intent.kind!r} requests"
        )

    def _call(self, workflow: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """``workflow.method(...)``; a non-ConnectSW exception names the workflow's plugin."""
        owner = self.registries.workflows.owners.get(workflow.name, "?")
        try:
            with plugin_output_to_stderr():
                # Bounded for a third-party workflow: a claims() that blocks is skipped as
                # one that raises is, a decompose() that blocks fails the request (exit 3);
                # neither hangs it (trial 8b, F3).
                return call_plugin(
                    owner,
                    f'workflow "{workflow.name}" {method}',
                    getattr(workflow, method),
                    *args,
                    **kwargs,
                )
        except ConnectSWError:
            raise
        except BaseException as exc:
            if not is_plugin_failure(exc):
                raise
            raise plugin_code_error(owner, f'workflow "{workflow.name}" {method}', exc) from exc
