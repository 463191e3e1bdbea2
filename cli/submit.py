"""Commands that submit work: ``new product``, ``new feature``, ``fix``, ``run``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from connectsw.cli.context import (
    State,
    console,
    json_option,
    local_context,
    pass_state,
    print_json,
)
from connectsw.cli.drive import drive
from connectsw.cli.output_json import plan_json, stage_number
from connectsw.cli.render import line
from connectsw.core.errors import ExitCode, InvalidInput
from connectsw.core.models import Plan, Request, TaskSpec
from connectsw.core.planner import slugify
from connectsw.core.wording import counted

YES = click.option("--yes", "-y", is_flag=True, help="Approve every checkpoint; ask nothing.")
WORKSPACE = click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to work in (a git repository; created if missing).",
)
PLAN_ONLY = click.option("--plan-only", is_flag=True, help="Show the plan and stop; run nothing.")


def submit(state: State, command: str, text: str, workspace: Path, **flags: Any) -> None:
    """:func:`submit_request` (same arguments), then exit with the outcome's code."""
    execution_id, code = submit_request(state, command, text, workspace, **flags)
    if execution_id is not None:
        raise SystemExit(code)


def submit_request(
    state: State,
    command: str,
    text: str,
    workspace: Path,
    *,
    yes: bool,
    as_json: bool,
    plan_only: bool,
    run: bool = True,
    options: dict[str, Any] | None = None,
) -> tuple[str | None, int]:
    """Plan a request, show the plan and (``run``) drive it as the CLI does.

    Local mode plans here (``options`` go to the workflow's ``decompose``); server
    mode submits to the server, which plans. Returns the execution's id (None with
    ``plan_only``: nothing is persisted) and the CLI's exit code for its outcome.

    Raises:
        InvalidInput: ``options`` in server mode (a request to the server carries none).
    """
    request = Request(command=command, args=[text], context=local_context())
    remote = state.remote
    if remote is not None and not plan_only:
        from connectsw.cli.remote_submit import submit_remote

        if options:
            raise InvalidInput(
                f"workflow options ({', '.join(sorted(options))}) cannot be sent to a server;"
                " `connectsw logout` to plan locally"
            )
        return submit_remote(state, remote, request, workspace, yes=yes, as_json=as_json, run=run)
    engine = state.engine
    if plan_only:  # nothing is persisted: no execution is left pending
        planned = engine.plan(request, workspace, **(options or {}))
        if as_json:
            response = engine.execute_response(planned).to_api()
            plan_json(response["plan"])
            print_json({**response, "executionId": None})
        else:
            show_plan(planned.plan, None)
        return None, ExitCode.OK
    execution = engine.submit(request, workspace, **(options or {}))
    state.current_execution = execution.id  # a Ctrl-C from now on names it
    if not as_json:
        show_plan(execution.plan, execution.id)
    if not run:
        return execution.id, ExitCode.OK
    return execution.id, drive(state, execution.id, yes=yes, as_json=as_json)


def show_plan(plan: Plan, execution_id: str | None) -> None:
    """Print a plan: stages, tasks, dependencies and checkpoints (no id: only planned)."""
    from connectsw.conf.settings import get_settings
    from connectsw.gates.engine import rules_for

    # Each stage's own gates and its checkpoint type's rule set, as the gate will run them.
    rule_sets = {"rule_sets": get_settings().gates.model_dump()["rule_sets"]}
    head = f"Execution [bold]{execution_id}[/bold]" if execution_id else "Planned (not run)"
    console.print(head, end="")
    console.print(
        line(
            ": plan ",
            (plan.name, "bold"),
            f" ({plan.workflow}, {counted(len(plan.tasks), 'task')},"
            f" {counted(len(plan.checkpoints), 'checkpoint')})",
        )
    )
    if plan.estimated_duration:
        console.print(line(f"  estimated {plan.estimated_duration} (without checkpoint waits)"))
    for stage in plan.stages:
        console.print(line(f"  stage {stage_number(stage.index)}: {stage.name}"))
        for task in plan.stage_tasks(stage.index):
            needs = f" ← {', '.join(task.needs)}" if task.needs else ""
            console.print(
                line(
                    f"    • {task.id} ",
                    (f"({task.agent})", "dim"),
                    f" {task.title}{needs}",
                    *_learned(task),
                )
            )
            for preference in task.learned.preferences if task.learned else []:
                console.print(line(("      preference applied: ", "cyan"), preference))
        gates = rules_for(stage, rule_sets)
        if gates:
            console.print(line(f"    gates: {', '.join(gates)}"))
        if stage.checkpoint:
            console.print(
                line(
                    (f"    checkpoint {stage.checkpoint.type}", "magenta"),
                    f": {stage.checkpoint.question}",
                )
            )


def _learned(task: TaskSpec) -> list[tuple[str, str]]:
    """What the history changed in a task, for the plan view."""
    learned = task.learned
    if learned is None:
        return []
    seconds = learned.estimated_seconds
    shown = f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    basis = "history" if learned.basis == "history" else "no history"
    parts = [(f"  ~{shown} ({basis})", "dim")]
    if learned.extra_retries:
        n = learned.extra_retries
        parts.append((f"  +{counted(n, 'retry', 'retries')} (failure-prone)", "yellow"))
    return parts


def submit_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options every submitting command takes."""
    for option in (pass_state, json_option, PLAN_ONLY, YES, WORKSPACE):
        f = option(f)
    return f


@click.group("new")
def new() -> None:
    """Start new work: a product or a feature."""


@new.command("product")
@click.argument("description")
@submit_options
def new_product(state: State, description: str, workspace: Path | None, **flags: bool) -> None:
    """Build a new product from one sentence (default workspace: ./SLUG)."""
    ws = workspace or Path.cwd() / slugify(description)
    submit(state, "new product", description, ws, **flags)


@new.command("feature")
@click.argument("description")
@submit_options
def new_feature(state: State, description: str, workspace: Path | None, **flags: bool) -> None:
    """Add a feature to the product in the workspace (default: current directory)."""
    submit(state, "new feature", description, workspace or Path.cwd(), **flags)


@click.command("fix")
@click.argument("description")
@submit_options
def fix(state: State, description: str, workspace: Path | None, **flags: bool) -> None:
    """Fix a bug in the product in the workspace (default: current directory)."""
    submit(state, "fix", description, workspace or Path.cwd(), **flags)


@click.command("run")
@click.argument("graph_file", type=click.Path(path_type=Path))
@submit_options
def run(state: State, graph_file: Path, workspace: Path | None, **flags: bool) -> None:
    """Run a task-graph file (YAML or JSON; see `connectsw schema`)."""
    # Not resolve(): a broken symbolic link must be named as the user gave it.
    submit(state, "run", os.path.abspath(graph_file), workspace or Path.cwd(), **flags)
