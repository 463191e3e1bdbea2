"""How executions look in a terminal, and the exit code each outcome gives."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from connectsw.cli.output_json import stage_number
from connectsw.core.models import ExecutionStatus, ExecutionView
from connectsw.core.states import EXECUTION_EXIT_CODES, EXECUTION_STYLES, TASK_STYLES


def id_table(*headers: str, **options: Any) -> Table:
    """A table whose first column (an id people copy) is never cut or wrapped, even on
    an 80-column terminal (found by the new-user trial: ``exec_ba6443ecd1…``)."""
    table = Table(box=None, **options)
    for i, header in enumerate(headers):
        if i == 0:
            table.add_column(header, no_wrap=True, min_width=1, overflow="fold")
        else:
            table.add_column(header)
    return table


def line(*parts: str | tuple[str, str]) -> Text:
    """One line of plain text and ``(text, style)`` parts: never parsed as markup.

    User text (titles, names, paths, messages) is printed only this way: rich's
    ``escape`` cannot express every string (``a\\[b``), and ``[/x]`` in markup raises.
    """
    return Text.assemble(*parts)


def report(view: ExecutionView, as_json: bool) -> int:
    """Print the execution (its JSON with ``--json``); return its exit code."""
    from connectsw.cli.context import console, print_json
    from connectsw.cli.output_json import view_json

    if as_json:
        print_json(view_json(view))
    else:
        show_view(console, view)
    return exit_code(view.status)


def exit_code(status: ExecutionStatus) -> int:
    """The state table's code: 1 failed or gate-stopped, 8 cancelled, else 0."""
    return int(EXECUTION_EXIT_CODES[status])


def status_text(status: ExecutionStatus) -> str:
    """A status word in its colour."""
    style = EXECUTION_STYLES.get(status, "white")
    return f"[{style}]{status.value}[/{style}]"


def money(dollars: float) -> str:
    """``$0.0123``: US dollars to four decimals (a call often costs under a cent)."""
    return f"${dollars:.4f}"


def show_view(console: Console, view: ExecutionView) -> None:
    """Print an execution: status, tasks, and what to do next."""
    eid = view.execution_id
    console.print(
        f"Execution [bold]{eid}[/bold]: {status_text(view.status)}"
        f"  (stage {stage_number(view.stage)}, round {view.round})"
    )
    console.print(line("Workspace: ", view.workspace))
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("task")
    table.add_column("state")
    usage = view.usage
    if usage:  # columns of model use only when a model was called
        for name in ("calls", "tokens in", "tokens out", "cost"):
            table.add_column(name, justify="right")
    for tid, state in view.tasks.items():
        style = TASK_STYLES.get(state, "white")
        cells: list[Text | str] = [Text(tid), f"[{style}]{state.value}[/{style}]"]
        if usage:
            u = usage.tasks.get(tid)
            cells += (
                [str(u.calls), str(u.tokens_in), str(u.tokens_out), money(u.cost)]
                if u
                else ["", "", "", ""]
            )
        table.add_row(*cells)
    console.print(table)
    if usage:
        console.print(
            f"Model use: {usage.calls} calls, {usage.tokens_in} tokens in, "
            f"{usage.tokens_out} tokens out, {money(usage.cost)}"
        )
    if view.error:
        console.print(f"[red]{escape(view.error)}[/red]")
    if view.gate is not None and not view.gate.passed:
        for rule in view.gate.rules:
            if not rule.passed:
                console.print(
                    Panel(
                        escape(rule.details or ""),
                        title=f"gate rule {rule.rule} failed",
                        border_style="red",
                    )
                )
        if view.gate.remediation:
            console.print(f"Remediation: {view.gate.remediation}")
    status = view.status
    if status is ExecutionStatus.AWAITING_CHECKPOINT and view.checkpoint is not None:
        cp = view.checkpoint
        body = Text("\n").join(
            [line((cp.question, "bold")), Text()]
            + [line(f"  {a.type:<9} {a.path}") for a in cp.artifacts]
        )
        console.print(Panel(body, title=line(f"checkpoint {cp.type}"), border_style="magenta"))
        console.print(
            f"Approve:          connectsw approve {eid}\n"
            f'Request changes:  connectsw request-changes {eid} --feedback "..."\n'
            f"Cancel:           connectsw cancel {eid}"
        )
    elif status in (
        ExecutionStatus.FAILED,
        ExecutionStatus.GATE_FAILED,
        ExecutionStatus.INTERRUPTED,
    ):
        console.print(f"Resume:           connectsw resume {eid}")
        if status is not ExecutionStatus.INTERRUPTED:
            console.print(f'Request changes:  connectsw request-changes {eid} --feedback "..."')
