"""Reading executions: ``status`` and ``watch``."""

from __future__ import annotations

import json

import click
from rich.text import Text

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.output_json import event_json, stage_number
from connectsw.cli.render import exit_code, id_table, report, show_view, status_text
from connectsw.core.models import ExecutionStatus
from connectsw.core.states import STOPPED


@click.command("status")
@click.argument("execution_id", required=False)
@click.option("--no-resume", is_flag=True, help="Only report an interrupted execution.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Executions listed without an ID (1 to 10000).",
)
@json_option
@pass_state
def status(
    state: State, execution_id: str | None, no_resume: bool, limit: int, as_json: bool
) -> None:
    """Show an execution (continuing it if it was interrupted), or list recent ones.

    When another process takes an interrupted execution over first, its state is
    shown (exit 0 while it runs), as for a live owner."""
    if state.remote is not None:
        from connectsw.cli.remote_status import remote_status

        raise SystemExit(remote_status(state.remote, execution_id, limit, as_json))
    engine = state.views  # reads only: no Dask unless it resumes
    if execution_id is None:
        executions = engine.store.list_executions(limit)
        if as_json:
            print_json(
                [
                    {
                        "executionId": e.id,
                        "status": engine.status(e).value,
                        "plan": e.plan.name,
                        "stage": stage_number(e.stage),
                        "stages": len(e.plan.stages),
                        "updatedAt": e.updated_at.isoformat(),
                    }
                    for e in executions
                ]
            )
            return
        table = id_table("execution", "status", "plan", "stage", "updated", header_style="bold")
        for e in executions:
            table.add_row(
                e.id,
                status_text(engine.status(e)),
                Text(e.plan.name),
                f"{stage_number(e.stage)}/{len(e.plan.stages)}",
                f"{e.updated_at:%Y-%m-%d %H:%M}",
            )
        console.print(table if executions else "No executions yet.")
        return
    execution = engine.get(execution_id)
    if engine.status(execution) is ExecutionStatus.INTERRUPTED and not no_resume:
        from connectsw.cli.drive import drive_or_show

        if not as_json:
            console.print(f"[yellow]{execution_id} was interrupted; resuming it.[/yellow]")
        raise SystemExit(drive_or_show(state, execution_id, as_json=as_json))
    raise SystemExit(report(engine.view(execution_id), as_json))


@click.command("watch")
@click.argument("execution_id")
@click.option("--from-start", is_flag=True, help="Replay the execution's events from the start.")
@json_option
@pass_state
def watch(state: State, execution_id: str, from_start: bool, as_json: bool) -> None:
    """Follow an execution's events live until it pauses or ends.

    Exits as `connectsw status ID` does for the status it stopped in: 1 failed,
    8 cancelled, else 0 (core/states.py, EXECUTION_EXIT_CODES)."""
    if state.remote is not None:
        from connectsw.cli.remote_drive import follow, view

        follow(state.remote, execution_id, 0, as_json=as_json)
        final = view(state.remote, execution_id)
        if not as_json:
            show_view(console, final)
        raise SystemExit(exit_code(final.status))
    engine = state.views
    execution = engine.get(execution_id)
    after = 0 if from_start else max(engine.store.last_event_seq(execution_id) - 20, 0)

    def stopped() -> bool:
        return engine.status(engine.get(execution_id)) in STOPPED

    if as_json:
        import time

        while True:
            for event in engine.store.events(execution_id, after=after):
                after = event.seq
                click.echo(json.dumps(event_json(event)))
            if stopped():
                if not engine.store.events(execution_id, after=after):
                    break
                continue
            time.sleep(0.2)
        raise SystemExit(exit_code(engine.status(engine.get(execution_id))))
    from connectsw.cli.progress import Follower  # rich's progress bars: for watch only

    Follower(engine.store, execution, console, after=after).follow_until(stopped)
    final = engine.view(execution_id)
    show_view(console, final)
    raise SystemExit(exit_code(final.status))
