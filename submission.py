"""Submitting a request from a plugin's own CLI command: :func:`submit`.

A plugin that adds a command (the ``register_commands`` hook) submits work the way
``connectsw new product``, ``fix`` and ``run`` do, through this function rather
than the CLI's internals::

    @hookimpl
    def register_commands(cli):
        @cli.command("release-notes")
        @click.argument("version")
        def release_notes(version):
            execution_id = submit("release", version, yes=True)
            click.echo(execution_id)

It works in local mode (the request is planned here and run on this machine) and
in server mode after ``connectsw login`` (the server plans and runs it; the
workspace's commits go up as a bundle for every command but ``new product``), as
the CLI's own commands do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from connectsw.core.errors import ConnectSWError, ExitCode

__all__ = ["ExecutionNotCompleted", "submit"]


class ExecutionNotCompleted(ConnectSWError):
    """The submitted execution failed, was stopped by a gate or was cancelled.

    ``exit_code`` is the CLI's code for its outcome (1 failed, 8 cancelled: the
    state table, :data:`connectsw.core.states.EXECUTION_EXIT_CODES`);
    ``execution_id`` names it.
    """

    code = "execution_not_completed"

    def __init__(self, execution_id: str, exit_code: int) -> None:
        super().__init__(
            f"execution {execution_id} did not complete; `connectsw status {execution_id}`"
            " shows why"
        )
        self.execution_id = execution_id
        self.exit_code = ExitCode(exit_code)


def submit(
    command: str,
    text: str,
    *,
    workspace: str | os.PathLike[str] | None = None,
    yes: bool = False,
    run: bool = True,
    as_json: bool = False,
    check: bool = True,
    **options: Any,
) -> str:
    """Submit ``command`` (a workflow's command words, e.g. ``"release"``, ``"fix"``,
    ``"new feature"``) with the request text ``text``; return the execution's id.

    As the CLI's submitting commands: the plan is shown, then (``run``) the
    execution runs with progress on the terminal until it ends or waits at a
    checkpoint; ``yes`` approves every checkpoint; a person at a terminal is asked
    at each checkpoint otherwise. ``as_json`` prints the execution's JSON instead.
    ``run=False`` only plans and persists it (``connectsw resume ID`` runs it in
    local mode; a server runs it at once). ``workspace`` is the project's directory
    (default: the current directory). ``options`` go to the workflow's
    ``decompose(intent, **options)`` (local mode only).

    Called inside a ``connectsw`` command, it uses that invocation's engine and
    settings (and Ctrl-C names the execution to resume); elsewhere it opens its own.

    Raises:
        PlanError: an unknown command (the error lists the known ones), an empty or
            too long text, or an invalid plan (exit 2).
        PluginError: the workflow's code raised (exit 3), naming its plugin.
        InvalidInput: ``options`` in server mode.
        ExecutionNotCompleted: with ``check`` (the default), the execution failed,
            a gate stopped it or it was cancelled (its ``exit_code`` is the CLI's).
    """
    import click

    from connectsw.cli.context import State
    from connectsw.cli.submit import submit_request

    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx is not None else None
    own = state is None
    if state is None:
        state = State()
    try:
        execution_id, code = submit_request(
            state,
            command,
            text,
            Path(workspace) if workspace is not None else Path.cwd(),
            yes=yes,
            as_json=as_json,
            plan_only=False,
            run=run,
            options=options,
        )
    finally:
        if own:
            state.close()
    assert execution_id is not None  # plan_only=False always persists
    if check and code != ExitCode.OK:
        raise ExecutionNotCompleted(execution_id, code)
    return execution_id
