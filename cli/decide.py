"""Checkpoint decisions and resuming: ``approve``, ``request-changes``, ``cancel``, ``resume``."""

from __future__ import annotations

import click

from connectsw.cli.context import State, console, json_option, pass_state, print_json
from connectsw.cli.drive import drive, drive_or_show
from connectsw.cli.output_json import view_json
from connectsw.core.errors import Cancelled, InvalidState
from connectsw.core.models import Decision, ExecutionStatus, ExecutionView
from connectsw.core.states import FINISHED

EXECUTION_ID = click.argument("execution_id")
NO_RUN = click.option("--no-run", is_flag=True, help="Record the decision; run nothing now.")
YES = click.option("--yes", "-y", is_flag=True, help="Approve every later checkpoint too.")


def _decide(
    state: State,
    execution_id: str,
    decision: Decision,
    feedback: str | None,
    *,
    run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    remote = state.remote
    if remote is not None:
        from connectsw.cli.remote_drive import decide, remote_drive, view

        answer = decide(remote, execution_id, decision, feedback)
        if not run or answer["status"] in {s.value for s in FINISHED}:
            _show_decided(view(remote, execution_id), execution_id, decision, as_json)
            return
        raise SystemExit(remote_drive(state, remote, execution_id, yes=yes, as_json=as_json))
    if not run:  # plugins are needed only for the event hooks: wait for them briefly
        from connectsw.plugins.manager import wait_briefly

        wait_briefly()
    execution = state.engine.decide(execution_id, decision, feedback)
    if not run or execution.status.finished:
        _show_decided(state.engine.view(execution_id), execution_id, decision, as_json)
        return
    # The decision is recorded: if another process runs the execution now, show it.
    raise SystemExit(drive_or_show(state, execution_id, yes=yes, as_json=as_json))


#: What a decision recorded, and what continuing it runs (``--no-run`` says both).
RECORDED = {
    Decision.APPROVE: ("approved", "The next stage runs"),
    Decision.REQUEST_CHANGES: ("changes requested", "The stage runs again with the feedback"),
}


def _show_decided(
    view: ExecutionView, execution_id: str, decision: Decision, as_json: bool
) -> None:
    """After a decision: a finished execution's status; else (``--no-run``) what was
    recorded and the command that continues (issue 5, kind 11), not the "interrupted"
    that an execution nobody runs shows."""
    if as_json or view.status.finished or decision not in RECORDED:
        _show_status(view, execution_id, as_json)
        return
    done, then = RECORDED[decision]
    console.print(
        f"Execution [bold]{execution_id}[/bold]: {done} (recorded; nothing runs now).",
        highlight=False,
    )
    console.print(f"{then} when you continue it:", highlight=False)
    console.print(f"  connectsw resume {execution_id}", highlight=False, soft_wrap=True)


def _show_status(view: ExecutionView, execution_id: str, as_json: bool) -> None:
    if as_json:
        print_json(view_json(view))
    else:
        console.print(f"Execution [bold]{execution_id}[/bold]: {view.status.value}")


@click.command("approve")
@EXECUTION_ID
@click.option("--feedback", "-f", help="Optional note, passed to the next stage's agents.")
@NO_RUN
@YES
@json_option
@pass_state
def approve(
    state: State, execution_id: str, feedback: str | None, no_run: bool, yes: bool, as_json: bool
) -> None:
    """Approve the checkpoint and run the next stage."""
    _decide(
        state, execution_id, Decision.APPROVE, feedback, run=not no_run, yes=yes, as_json=as_json
    )


@click.command("request-changes")
@EXECUTION_ID
@click.option("--feedback", "-f", required=True, help="What should change.")
@NO_RUN
@YES
@json_option
@pass_state
def request_changes(
    state: State, execution_id: str, feedback: str, no_run: bool, yes: bool, as_json: bool
) -> None:
    """Re-run the stage with feedback given to its agents."""
    _decide(
        state,
        execution_id,
        Decision.REQUEST_CHANGES,
        feedback,
        run=not no_run,
        yes=yes,
        as_json=as_json,
    )


@click.command("cancel")
@EXECUTION_ID
@click.option("--reason", help="Why (recorded with the decision).")
@json_option
@pass_state
def cancel(state: State, execution_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel the execution; returns once its running work has stopped."""
    remote = state.remote
    if remote is not None:
        from connectsw.cli.remote_drive import decide, view, wait_until_stopped

        decide(remote, execution_id, Decision.CANCEL, reason)
        wait_until_stopped(remote, execution_id)
        _show_status(view(remote, execution_id), execution_id, as_json)
        return
    from connectsw.plugins.manager import wait_briefly

    wait_briefly()  # plugins are needed only for the event hooks: a hanging one waits ~1 s
    state.engine.cancel(execution_id, reason, wait=True)
    _show_status(state.engine.view(execution_id), execution_id, as_json)


@click.command("resume")
@EXECUTION_ID
@YES
@json_option
@pass_state
def resume(state: State, execution_id: str, yes: bool, as_json: bool) -> None:
    """Continue an interrupted or failed execution: only unfinished tasks run."""
    remote = state.remote
    if remote is not None:
        from connectsw.cli.remote import execution_path
        from connectsw.cli.remote_drive import remote_drive

        remote.call("POST", execution_path(execution_id, "/resume"))
        raise SystemExit(remote_drive(state, remote, execution_id, yes=yes, as_json=as_json))
    execution = state.engine.get(execution_id)
    if execution.status is ExecutionStatus.CANCELLED:
        raise Cancelled(f"execution {execution_id} was cancelled; nothing to resume")
    if execution.status in FINISHED:
        raise InvalidState(
            f"execution {execution_id} is already {execution.status.value}; nothing to resume"
        )
    if execution.status is ExecutionStatus.AWAITING_CHECKPOINT:
        raise InvalidState(
            f"execution {execution_id} is waiting at a checkpoint: "
            f"`connectsw approve {execution_id}`, request changes or cancel it"
        )
    raise SystemExit(drive(state, execution_id, yes=yes, as_json=as_json))
