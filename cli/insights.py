"""``connectsw insights``: what the execution history says (issue 8 part 3, reference §2.4).

Success rates, durations (p50/p90, seconds), approval rates at checkpoints, the most
requested changes and the weak spots, per workflow, task and agent, from the
relational store (:func:`connectsw.core.learning.insights`). ``--json`` prints the
:class:`~connectsw.core.learning.Insights` document (camelCase keys, rates 0..1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.render import line
from connectsw.core.errors import InvalidInput

if TYPE_CHECKING:
    from connectsw.core.learning import Insights


def _pct(rate: float) -> str:
    return f"{rate * 100:.0f} %"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 90 else f"{value / 60:.1f} min"


def known_workflows(state: State) -> list[str]:
    """Workflows that are registered or appear in the history."""
    from connectsw.plugins.registry import get_registries

    names = {w.name for w in get_registries().workflows}
    return sorted(names | set(state.store.workflows_seen()))


def _table(title: str, *headers: str) -> Table:
    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    for h in headers:
        table.add_column(h)
    return table


def show(report: Insights) -> None:
    """The report as rich tables."""
    if not report.workflows and not report.tasks and not report.checkpoints:
        scope = f" of workflow {report.workflow}" if report.workflow else ""
        console.print(line(f"No history{scope} yet: run some executions first."))
        return
    flows = _table("Workflows", "workflow", "executions", "completed", "failed", "success")
    for w in report.workflows:
        counts = (str(w.executions), str(w.completed), str(w.failed))
        flows.add_row(line(w.workflow), *counts, _pct(w.success_rate))
    console.print(flows)
    tasks = _table("Tasks", "workflow", "task", "agent", "runs", "success", "retries", "p50", "p90")
    for t in report.tasks:
        tasks.add_row(
            line(t.workflow),
            line(t.task_id),
            line(t.agent),
            str(t.runs),
            _pct(t.success_rate),
            str(t.retries),
            _secs(t.p50_seconds),
            _secs(t.p90_seconds),
        )
    console.print(tasks)
    if report.checkpoints:
        cps = _table("Checkpoints", "workflow", "checkpoint", "decisions", "approved", "changes")
        for c in report.checkpoints:
            cps.add_row(
                line(c.workflow),
                line(c.checkpoint),
                str(c.decisions),
                _pct(c.approval_rate),
                str(c.changes_requested),
            )
        console.print(cps)
    if report.change_requests:
        asks = _table("Most requested changes", "workflow", "checkpoint", "times", "feedback")
        for r in report.change_requests:
            asks.add_row(line(r.workflow), line(r.checkpoint), str(r.count), line(r.feedback))
        console.print(asks)
    if report.weak_spots:
        console.print(line(("Weak spots", "bold")))
        for spot in report.weak_spots:
            where = f"  • {spot.workflow} / {spot.subject}: "
            console.print(line(where, (spot.detail, "yellow")))
    else:
        console.print(line("No weak spots."))


@click.command("insights")
@click.option("--workflow", "workflow", help="Only this workflow (e.g. new-product).")
@json_option
@pass_state
def insights(state: State, workflow: str | None, as_json: bool) -> None:
    """Success rates, durations, approval rates and weak spots from the execution history."""
    from connectsw.core.learning import insights as compute

    if workflow is not None:
        known = known_workflows(state)
        if workflow not in known:
            raise InvalidInput(f"unknown workflow {workflow!r} (known: {', '.join(known)})")
    report = compute(state.store, state.settings, workflow)
    if as_json:
        print_json(report.to_api())
        return
    show(report)
