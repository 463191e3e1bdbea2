"""Server mode's ``drive``: follow an execution on the server, ask at its checkpoints.

The same output as local mode: events rendered by ``cli/progress.py``'s
``describe`` under a progress bar, the same view, prompts and exit codes, the
same ``--json`` shapes (``cli/output_json.py``).
"""

from __future__ import annotations

import json
from typing import Any

import click

from connectsw.cli.context import State, console, interactive
from connectsw.cli.output_json import event_json
from connectsw.cli.progress import FINAL_TASK_EVENTS, QUIET, describe, new_progress
from connectsw.cli.remote import Remote, ServerUnreachable, execution_path
from connectsw.cli.render import report
from connectsw.core.models import Decision, Event, ExecutionStatus, ExecutionView


def view(remote: Remote, execution_id: str) -> ExecutionView:
    """``GET /v1/execution/{id}`` as the model local mode shows."""
    return ExecutionView.model_validate(remote.call("GET", execution_path(execution_id)))


def decide(
    remote: Remote, execution_id: str, decision: Decision, feedback: str | None
) -> dict[str, Any]:
    body = {"decision": decision.value, "feedback": feedback}
    answer: dict[str, Any] = remote.call("POST", execution_path(execution_id, "/checkpoint"), body)
    return answer


def follow(remote: Remote, execution_id: str, after: int, *, as_json: bool = False) -> int:
    """Print the execution's events until it stops; returns the last event's seq."""
    if as_json:
        for data in remote.events(execution_id, after):
            after = int(data["seq"])
            click.echo(json.dumps(event_json(Event.model_validate(data))))
        return after
    current = view(remote, execution_id)
    done = {t for t, s in current.tasks.items() if s.value not in ("pending", "running")}
    progress = new_progress(console)
    bar = progress.add_task(execution_id, total=len(current.tasks), completed=len(done))
    with progress:
        for data in remote.events(execution_id, after):
            event = Event.model_validate(data)
            after = event.seq
            if event.kind in FINAL_TASK_EVENTS and event.task_id:
                done.add(event.task_id)
                progress.update(bar, completed=len(done))
            if event.kind not in QUIET:
                progress.console.print(describe(event), soft_wrap=True)
    return after


def remote_drive(
    state: State,
    remote: Remote,
    execution_id: str,
    *,
    yes: bool = False,
    as_json: bool = False,
    after: int = 0,
    follow_events: bool = True,
) -> int:
    """Follow the execution on the server until it stops; at each checkpoint approve
    (``yes``), ask a person, or stop. Returns the CLI exit code."""
    state.current_execution = execution_id
    try:
        return _drive(state, remote, execution_id, yes=yes, as_json=as_json, after=after,
                      follow_events=follow_events)  # fmt: skip
    except ServerUnreachable as exc:  # say which execution, and what to run once it is back
        raise ServerUnreachable(
            f"{exc} — {execution_id} is kept on the server: `connectsw status {execution_id}`"
            " once it answers"
        ) from None


def _drive(
    state: State,
    remote: Remote,
    execution_id: str,
    *,
    yes: bool,
    as_json: bool,
    after: int,
    follow_events: bool,
) -> int:
    from connectsw.cli.drive import ask

    ask_person = not yes and not as_json and interactive()
    while True:
        if follow_events and not as_json:
            after = follow(remote, execution_id, after)
        else:
            wait_until_stopped(remote, execution_id, after)
        current = view(remote, execution_id)
        if current.status is not ExecutionStatus.AWAITING_CHECKPOINT:
            break
        if yes:
            decide(remote, execution_id, Decision.APPROVE, None)
            continue
        if not ask_person:
            break
        decision, feedback = ask(current)
        if decision is None:
            break
        decide(remote, execution_id, decision, feedback)
        if decision is Decision.CANCEL:
            break
    return report(view(remote, execution_id), as_json)


def wait_until_stopped(remote: Remote, execution_id: str, after: int = 0) -> None:
    """Read the event stream to its end (it ends when the execution stops)."""
    for _ in remote.events(execution_id, after):
        pass
