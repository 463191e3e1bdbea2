"""The ``connectsw`` entry point: a lazy command group, plugin commands, one-line errors.

Commands are imported only when they run (click's documented ``LazyGroup``
pattern, https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands):
``connectsw --help`` lists them from :data:`COMMANDS` without importing dask,
distributed, pydantic-settings or a store driver. Plugin commands (the
``register_commands`` hook) are added only for ``--help`` or a name that is not
built in, and a plugin that fails never stops a built-in command.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click
from rich.text import Text

from connectsw.cli.commands import COMMANDS
from connectsw.cli.context import State, err_console
from connectsw.core.errors import ConnectSWError, ExitCode, PluginError, one_line

"""Built-in commands: name -> ("module:attribute", the first line of its help)."""


class _Interrupted(Exception):
    """Ctrl-C inside a command: the hint is printed, stderr is silenced for the shutdown."""


class LazyGroup(click.Group):
    """A group whose built-in commands are imported only when they are used.

    ``lazy_commands`` maps a name to ``("module:attribute", short help)``.
    Plugin commands are added on the first listing (``--help``) or lookup of a
    name that is not built in; a plugin failure is kept in :attr:`plugin_error`
    and shown as a warning, never raised for a built-in command.
    """

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands
        self.plugin_error: str | None = None
        self._plugins_added = False

    # -- commands ---------------------------------------------------------------------------

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return sorted(set(self.lazy_commands) | set(self.commands) | set(self._workflow_words()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            self._strict_check(cmd_name)
            return self._load(cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self.add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        if command is None:
            command = self._workflow_command(cmd_name)
        if command is None and self.plugin_error:
            raise self.plugin_error_for(cmd_name)
        return command

    def _strict_check(self, cmd_name: str) -> None:
        """With ``CONNECTSW_STRICT_PLUGINS``, a plugin whose ``register_commands``
        fails is an error for every command, built-in ones too (exit 3)."""
        from connectsw.plugins.environment import STRICT_ENV, flag

        if cmd_name == "plugins" or not flag(STRICT_ENV):
            return  # `plugins` lists everything first, then raises (no plugin imported here)
        from connectsw.plugins import manager

        if not manager.strict_enabled():
            return
        manager.get_plugin_manager()  # a problem found while loading: its own error
        self.add_plugin_commands()
        if self.plugin_error:
            raise PluginError(f"{self.plugin_error} ({manager.STRICT_ENV} is set)")

    def _load(self, name: str) -> click.Command:
        module_name, attr = self.lazy_commands[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):  # a broken table is a bug, not user input
            raise TypeError(f"{module_name}:{attr} is not a click command")
        if name == "new" and isinstance(command, click.Group) and self._third_party(scan=True):
            from connectsw.cli.workflow_commands import add_workflow_commands

            add_workflow_commands(command, [name])  # a plugin workflow's "new release"
        return command

    @staticmethod
    def _third_party(scan: bool = False) -> bool:
        """True when plugins are loaded (``--help`` loads none without third-party ones);
        with ``scan``, also when a third-party plugin is installed."""
        from connectsw.plugins import manager

        if manager.is_loaded():
            return True
        return scan and bool(manager.entry_points(group=manager.ENTRY_POINT_GROUP))

    def _workflow_words(self) -> list[str]:
        """First words of the commands plugin workflows claim (for ``--help``).

        Empty when asking fails (strict mode with a plugin problem): the problem is
        already shown as :attr:`plugin_error`, and ``--help`` must still work.
        """
        if not self._third_party():
            return []
        from connectsw.cli.workflow_commands import first_words

        try:
            return [w for w in first_words() if w not in self.lazy_commands]
        except Exception:
            return []

    def _workflow_command(self, name: str) -> click.Command | None:
        """The command of a workflow claiming ``name`` (PlanError: a plugin that would)."""
        from connectsw.cli.workflow_commands import workflow_command

        return workflow_command(name)

    def plugin_error_for(self, cmd_name: str) -> ConnectSWError:
        """Why ``cmd_name`` is missing: a plugin's ``register_commands`` failed."""
        from connectsw.plugins import manager

        for source in manager.plugin_sources():
            if source.command_error is not None:
                error = manager.plugin_code_error(
                    source.name, "register_commands", source.command_error
                )
                head, _, rest = str(error).partition("; ")
                return PluginError(
                    f"{head}, so its commands are missing ({cmd_name!r} is unknown); {rest}"
                )
        return PluginError(f"no command {cmd_name!r}: {self.plugin_error}")

    def add_plugin_commands(self) -> None:
        """Let plugins add their commands (once); a failure is recorded, not raised."""
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            from connectsw.plugins import manager

            manager.add_plugin_commands(self)
            sources = manager.plugin_sources() if manager.is_loaded() else []
            failures = [
                f'plugin "{source.name}": {warning}'
                for source in sources
                for warning in source.warnings
                if warning.startswith("register_commands")
            ]
            if failures:
                self.plugin_error = "plugin commands are not available: " + "; ".join(failures)

        except Exception as exc:
            self.plugin_error = f"plugin commands are not available: {one_line(exc, typed=True)}"

    # -- help -------------------------------------------------------------------------------

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, with built-in help from the table (no command is imported).

        Plugins are waited for only briefly (``manager.wait_briefly``): a plugin that
        hangs at import delays ``--help`` by about a second, and its commands are
        named as not listed.
        """
        from connectsw.plugins import manager

        manager.wait_briefly()
        entries: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                # A stand-in command shortens the help exactly as click does.
                entries.append((name, click.Command(name, help=self.lazy_commands[name][1])))
            elif name in self.commands and not self.commands[name].hidden:
                entries.append((name, self.commands[name]))
            elif name in self._workflow_words():
                command = self._workflow_command(name)
                if command is not None:
                    entries.append((name, command))
        if entries:
            limit = formatter.width - 6 - max(len(name) for name, _ in entries)
            rows = [(name, command.get_short_help_str(limit)) for name, command in entries]
            with formatter.section("Commands"):
                formatter.write_dl(rows)
        if self.plugin_error:
            err_console.print(
                Text.assemble(("Warning:", "yellow"), " ", self.plugin_error), soft_wrap=True
            )
        for source in manager.cut_short():
            err_console.print(
                Text.assemble(
                    ("Warning:", "yellow"),
                    f' plugin "{source.name}": {source.error}; its commands are not listed'
                    " (`connectsw plugins` waits longer)",
                ),
                soft_wrap=True,
            )

    # -- Ctrl-C -----------------------------------------------------------------------------

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            state = ctx.find_object(State)
            _interrupted(state.current_execution if state else None)
            raise _Interrupted() from None


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="connectsw", prog_name="connectsw")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ConnectSW: plan software work, run it on Dask, decide at checkpoints."""
    global _state
    state = _state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


_state: State | None = None
_hint_shown = False


#: Ctrl-C when the command drives no execution (it has not been created, or the command
#: records none, as ``gates check``): there is nothing to resume.
NOTHING_TO_RESUME = (
    "Interrupted; no execution was started, nothing to resume: run the command again"
)


def _continue_hint(execution_id: str | None) -> str:
    """What to run next: a decision at a checkpoint, ``resume`` for an execution that can
    go on, ``status`` for one that had ended, else (no execution) the command again."""
    if not execution_id:
        return NOTHING_TO_RESUME
    waiting = False
    remote = None
    looked_up, status = False, None
    with contextlib.suppress(Exception):  # the hint must never fail the shutdown
        from connectsw.core.models import ExecutionStatus
        from connectsw.core.states import FINISHED

        remote = _state.remote if _state is not None else None
        if remote is not None:  # server mode: ask the server
            from connectsw.cli.remote_drive import view

            status = view(remote, execution_id).status
            looked_up = True
        elif _state is not None and _state.store is not None:
            status = _state.store.execution_status(execution_id)
            looked_up = True
        waiting = status is ExecutionStatus.AWAITING_CHECKPOINT
        if looked_up and status is None:  # never stored
            return NOTHING_TO_RESUME
        if status in FINISHED:
            return (
                f"Interrupted; {execution_id} had already ended ({status.value}):"
                f" `connectsw status {execution_id}` shows it"
            )
    if waiting:
        return (
            f"Interrupted; {execution_id} waits at a checkpoint: `connectsw approve"
            f' {execution_id}`, `connectsw request-changes {execution_id} --feedback "..."`'
            f" or `connectsw cancel {execution_id}`"
        )
    if remote is not None:  # the server goes on without this process
        return (
            f"Interrupted; the server goes on with {execution_id}: `connectsw watch"
            f" {execution_id}` follows it, `connectsw status {execution_id}` shows it"
        )
    return f"Interrupted; continue with `connectsw resume {execution_id}`"


def _interrupted(execution_id: str | None) -> None:
    """Print the one-line resume hint and silence everything the shutdown would print.

    distributed's loggers and this process's stderr (file descriptor 2, where
    worker processes' output arrives too) go quiet for the rest of the process:
    a cluster torn down by Ctrl-C otherwise prints dozens of lines of tracebacks.
    ``CONNECTSW_DEBUG=1`` keeps them.
    """
    global _hint_shown
    if _hint_shown:
        return
    _hint_shown = True
    line = _continue_hint(execution_id)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get("CONNECTSW_DEBUG"):
        print(line, file=sys.stderr, flush=True)
        return
    logging.disable(logging.CRITICAL)
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _store_hint(exc: ConnectSWError) -> str:
    """For a store that failed under a running execution, what to run once it answers
    again (trial 8, F5: a dropped connection ended the run, exit 6, with no hint), in
    the same line; empty otherwise."""
    from connectsw.core.errors import StoreError

    execution_id = _state.current_execution if _state is not None else None
    if not isinstance(exc, StoreError) or not execution_id:
        return ""
    return f"; once the store answers, continue with `connectsw resume {execution_id}`"


def _fail(message: str, code: int) -> None:
    err_console.print(Text.assemble(("Error:", "red"), " ", message), soft_wrap=True)
    sys.exit(code)


def _check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 (exit 2, one line), for every command:
    an id, a feedback or reason text, a path; none could be stored (records are JSON)
    or found, and each reached the store as exit 70 or a misleading exit 6."""
    from connectsw.core.errors import is_utf8, shown

    for arg in args:
        if not is_utf8(arg):
            _fail(f"argument '{shown(arg)}' is not valid UTF-8", ExitCode.INVALID_INPUT)


#: Signals that stop a command as Ctrl-C does, and the exit code each gives.
_STOP_SIGNALS = {signal.SIGTERM: ExitCode.TERMINATED, signal.SIGHUP: ExitCode.HANGUP}
_stopped_by: ExitCode | None = None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI timeout, ``docker stop``) and SIGHUP (a closed terminal) stop a
    command as Ctrl-C does: running work ended, the resume hint printed; exit 143 or
    129. SIGTERM used to end the process at once, silently (trial 7, M5), leaving
    temporary copies behind; SIGHUP exited 129 with no line (trial 8, M2). In the main
    thread only (``main`` called from elsewhere leaves the handlers alone); the
    handlers before are back when the command ends (``main`` called in a process that
    goes on)."""
    global _stopped_by
    _stopped_by = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        global _stopped_by
        _stopped_by = _STOP_SIGNALS[signal.Signals(signum)]
        raise KeyboardInterrupt

    before = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _interrupt_code() -> ExitCode:
    return _stopped_by or ExitCode.INTERRUPTED


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors are one line on stderr and an :class:`ExitCode`, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    debug = bool(os.environ.get("CONNECTSW_DEBUG"))
    cli._plugins_added, cli.plugin_error = False, None  # plugins are asked once per invocation
    _check_arguments(sys.argv[1:] if argv is None else argv)
    with _terminate_as_interrupt():
        _run(argv, debug)


def _run(argv: list[str] | None, debug: bool) -> None:
    """The command, its errors made one line on stderr and an exit code."""
    try:
        cli.main(args=argv, prog_name="connectsw", standalone_mode=False)
    except _Interrupted:
        sys.exit(_interrupt_code())
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Ctrl-C outside a command (or a second one during the shutdown), or an aborted prompt.
        if not _hint_shown and _state is not None and _state.current_execution:
            _interrupted(_state.current_execution)
        elif not _hint_shown:
            _fail("aborted", _interrupt_code())
        sys.exit(_interrupt_code())
    except BrokenPipeError:
        # A plain write (JSON) to a closed pipe: the work is done; say so once.
        from connectsw.cli.context import discard_stdout

        with contextlib.suppress(OSError):
            discard_stdout()
        _fail("output closed early (broken pipe)", ExitCode.ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConnectSWError as exc:
        if debug and isinstance(exc, PluginError) and exc.__cause__ is not None:
            # A plugin's code raised: its author gets the traceback of the cause.
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        _fail(one_line(exc) + _store_hint(exc), exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (CONNECTSW_DEBUG=1 shows the traceback)",
            ExitCode.INTERNAL,
        )


if __name__ == "__main__":
    main()
