"""The ``connectsw`` entry point: command groups, plugin commands, one-line errors."""

from __future__ import annotations

import logging
import os
import sys

import click

from connectsw import __version__
from connectsw.cli.context import State, err_console
from connectsw.cli.decide import approve, cancel, request_changes, resume
from connectsw.cli.plugins import plugins, schema
from connectsw.cli.status import status, watch
from connectsw.cli.submit import fix, new, run
from connectsw.core.errors import ConnectSWError

INTERNAL_ERROR = 70


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="connectsw")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ConnectSW: plan software work, run it on Dask, decide at checkpoints."""
    state = ctx.ensure_object(State)
    ctx.call_on_close(state.close)


for command in (
    new,
    fix,
    run,
    status,
    watch,
    approve,
    request_changes,
    cancel,
    resume,
    plugins,
    schema,
):
    cli.add_command(command)


def _add_plugin_commands() -> None:
    from connectsw.plugins.manager import get_plugin_manager

    get_plugin_manager().hook.register_commands(cli=cli)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[red]Error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors are one line on stderr and a non-zero exit, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    debug = bool(os.environ.get("CONNECTSW_DEBUG"))
    try:
        _add_plugin_commands()
        cli.main(args=argv, prog_name="connectsw", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConnectSWError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; the execution can be continued with `connectsw resume ID`", 130)
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (CONNECTSW_DEBUG=1 shows the traceback)",
            INTERNAL_ERROR,
        )


if __name__ == "__main__":
    main()
