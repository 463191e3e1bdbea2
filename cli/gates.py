"""``connectsw gates ...``: the quality-gate rules and rule sets, and a gate run on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.output_json import stage_number
from connectsw.cli.render import line
from connectsw.core.errors import ExitCode, NotFound
from connectsw.core.models import Execution, GateResult

#: Executions looked through for the latest one of a workspace (``check --stage``).
RECENT = 1000


@click.group("gates")
def gates_group() -> None:
    """Quality gates: the rules, the rule sets per checkpoint type, a check on demand."""


def _rules_json(state: State) -> list[dict[str, Any]]:
    from connectsw.plugins.registry import get_registries

    regs = get_registries()
    return [
        {
            "name": name,
            "description": str(getattr(rule, "description", "") or ""),
            "applies_to": list(getattr(rule, "applies_to", ()) or ()),
            "plugin": regs.gates.owners.get(name, ""),
        }
        for name, rule in regs.gates.items.items()
    ]


@gates_group.command("list")
@json_option
@pass_state
def list_gates(state: State, as_json: bool) -> None:
    """List the gate rules, what each applies to, and the rule set of each checkpoint type."""
    from connectsw.gates.detect import TRAITS

    rules = _rules_json(state)
    names = {r["name"] for r in rules}
    gates = state.settings.gates
    sets = {
        cp: {
            "rules": rs.rules,
            "not_run_passes": rs.not_run_passes,
            "unknown": [n for n in rs.rules if n not in names],
        }
        for cp, rs in gates.rule_sets.items()
    }
    if as_json:
        print_json(
            {
                "rules": rules,
                "rule_sets": sets,
                "remediation_rounds": gates.remediation_rounds,
                "traits": TRAITS,
            }
        )
        return
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("rule", "applies to", "plugin", "description"):
        table.add_column(column)
    for r in rules:
        table.add_row(
            line(r["name"]),
            line(", ".join(r["applies_to"]) or "any workspace"),
            line(r["plugin"]),
            line(r["description"]),
        )
    console.print(table)
    console.print()
    if not sets:
        console.print("No rule sets: stages run only their own gates.")
    for cp, rs in sets.items():
        text = Text.assemble(("rule set ", "bold"), (cp, "bold magenta"), ": ")
        text.append(", ".join(rs["rules"]) or "(none)")
        if rs["not_run_passes"]:
            text.append(f"; passes when not run: {', '.join(rs['not_run_passes'])}")
        if rs["unknown"]:
            text.append(f"; not installed: {', '.join(rs['unknown'])}", style="red")
        console.print(text)
    console.print(
        line(
            f"A failed gate sends its stage back to the agents up to "
            f"{gates.remediation_rounds} time(s), then stops for a person."
        )
    )


def _latest_for(state: State, workspace: Path) -> Execution:
    """The most recent execution whose workspace is ``workspace``."""
    target = workspace.resolve()
    for execution in state.store.list_executions(limit=RECENT):
        if Path(execution.workspace).resolve() == target:
            return execution
    raise NotFound(f"no execution has the workspace {target}; give an execution id")


def _outcome(r: Any) -> tuple[str, str]:
    if r.details == "not applicable":
        return "not applicable", "dim"
    if not r.ran:
        return ("not run (passes)" if r.passed else "not run"), "yellow"
    return ("passed", "green") if r.passed else ("failed", "red")


def _show(gate: GateResult, where: str) -> None:
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("rule", "result", "score", "evidence"):
        table.add_column(column)
    for r in gate.rules:
        word, style = _outcome(r)
        first = next((x for x in r.details.splitlines() if x.strip()), "")
        table.add_row(line(r.rule), Text(word, style=style), f"{r.score:g}", line(first[:100]))
    console.print(line(f"Gate on {where}"))
    console.print(table)
    for r in gate.rules:
        if not r.passed:
            body = Text(r.details)
            if r.remediation:
                body.append("\n\nRemediation: ", style="bold")
                body.append(r.remediation)
            console.print(Panel(body, title=line(f"{r.rule} failed"), border_style="red"))
        for a in r.artifacts:
            console.print(line(f"  {r.rule} {a.type}: {a.path}"))
    verdict = ("passed", "green") if gate.passed else ("failed", "red")
    console.print(Text.assemble("Gate ", verdict, f"  (score {gate.score:g})"))


@gates_group.command("check")
@click.argument("execution_id", required=False)
@click.option(
    "--stage",
    type=click.IntRange(1),
    help="Check this stage (from 1) of the execution (default: the workspace's latest).",
)
@click.option(
    "--workspace",
    type=click.Path(path_type=Path),  # checked by check_workspace: one line, exit 2
    help="The workspace to check (default: the current directory).",
)
@click.option("--checkpoint", help="Run the rule set of this checkpoint type.")
@click.option("--rule", "rules", multiple=True, help="Run this rule (repeatable).")
@json_option
@pass_state
def check(
    state: State,
    execution_id: str | None,
    stage: int | None,
    workspace: Path | None,
    checkpoint: str | None,
    rules: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run a gate now and print each rule's verdict and evidence; nothing is recorded.

    With an EXECUTION_ID or --stage: that execution's stage (default: its current
    one) with its rules and latest task results. Otherwise the workspace, with the
    given rules, the rule set of --checkpoint, or every rule. Exit 0 when the gate
    passes, 1 when it fails.
    """
    from connectsw.gates.check import check_dir, check_stage, check_workspace
    from connectsw.plugins.registry import get_registries

    settings = state.settings
    config = settings.gates.model_dump()
    folder = check_dir(settings.data_dir)
    ws = (workspace or Path.cwd()).resolve()
    if execution_id is not None or stage is not None:
        execution = (
            state.views.get(execution_id) if execution_id is not None else _latest_for(state, ws)
        )
        index = stage - 1 if stage is not None else execution.stage
        gate = check_stage(
            execution,
            index,
            state.store.task_results(execution.id),
            config,
            get_registries(),
            artifact_dir=folder,
        )
        where = f"execution {execution.id}, stage {stage_number(index)}"
        ws = Path(execution.workspace)
    else:
        gate = check_workspace(
            ws,
            config,
            get_registries(),
            rules=list(rules) or None,
            checkpoint=checkpoint,
            artifact_dir=folder,
        )
        where = str(ws)
    if as_json:
        data = gate.to_api()
        data["stage"] = stage_number(gate.stage)
        data["workspace"] = str(ws)
        data["remediation"] = gate.remediation
        print_json(data)
    else:
        _show(gate, where)
    raise SystemExit(int(ExitCode.OK if gate.passed else ExitCode.FAILED))
