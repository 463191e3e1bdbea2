"""Run an execution from the CLI: progress while it runs, prompts at checkpoints."""

from __future__ import annotations

from connectsw.cli.context import State, console, interactive
from connectsw.cli.progress import Follower
from connectsw.cli.prompts import ask_choice, ask_text
from connectsw.cli.render import report, show_view
from connectsw.core.errors import HeldElsewhere
from connectsw.core.models import Decision, ExecutionStatus, ExecutionView

CHOICES = {"a": Decision.APPROVE, "r": Decision.REQUEST_CHANGES, "c": Decision.CANCEL, "l": None}


def ask(view: ExecutionView) -> tuple[Decision | None, str | None]:
    """Show the execution at its checkpoint and ask for a decision (None: decide later)."""
    show_view(console, view)
    decision = ask_choice("Decision: [a]pprove, [r]equest changes, [c]ancel, [l]ater", CHOICES)
    feedback = None
    if decision is Decision.REQUEST_CHANGES:
        feedback = ask_text("What should change?", required=True)
    elif decision is Decision.APPROVE:
        feedback = ask_text("Feedback (optional)", required=False) or None
    return decision, feedback


def drive(state: State, execution_id: str, *, yes: bool = False, as_json: bool = False) -> int:
    """Run until the execution stops; with ``yes`` approve every checkpoint. Returns exit code."""
    engine = state.engine
    state.current_execution = execution_id  # named in the Ctrl-C message
    ask_person = not yes and not as_json and interactive()
    while True:
        execution = engine.get(execution_id)
        if as_json:
            execution = engine.run(execution_id)
        else:
            after = engine.store.last_event_seq(execution_id)
            with Follower(engine.store, execution, console, after=after):
                execution = engine.run(execution_id)
        if execution.status is not ExecutionStatus.AWAITING_CHECKPOINT:
            break
        if yes:
            engine.decide(execution_id, Decision.APPROVE, by="auto (--yes)")
            continue
        if not ask_person:
            break
        decision, feedback = ask(engine.view(execution_id))
        if decision is None:
            break
        engine.decide(execution_id, decision, feedback)
        if decision is Decision.CANCEL:
            break
    return report(engine.view(execution_id), as_json)


def drive_or_show(
    state: State, execution_id: str, *, yes: bool = False, as_json: bool = False
) -> int:
    """:func:`drive`, but when another live process holds the execution (it took it
    over first), show its state instead of failing: for commands whose own part is done
    (a recorded decision) or that only read (``status``). Issue 5, kinds 3 and 11:
    losing that race is not an error for them; ``resume`` still exits 5."""
    try:
        return drive(state, execution_id, yes=yes, as_json=as_json)
    except HeldElsewhere as exc:
        if not as_json:
            console.print(f"[yellow]{exc}; showing its state.[/yellow]", highlight=False)
        return report(state.views.view(execution_id), as_json)
