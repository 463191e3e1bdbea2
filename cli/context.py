"""What every command shares: settings, the store, the engine, the request context, output.

Importing this module stays light (click and rich): settings, models, the store
and the engine are imported when a command first uses them, so ``--help`` and
read-only commands never pay for dask or distributed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

if TYPE_CHECKING:
    from connectsw.cli.remote import Remote
    from connectsw.conf.settings import Settings
    from connectsw.core.engine import Engine
    from connectsw.core.models import RequestContext
    from connectsw.core.stores import Store
    from connectsw.core.views import Views


# No highlighting: rich's highlighter costs time quadratic in a long unbroken word
# (a 100 KB title took minutes), and user text is escaped (cli/render.py: ``shown``).
class _Console(Console):
    """rich's Console, except that a reader who went away does not stop the work.

    rich exits with status 1 when stdout's pipe breaks (``connectsw run ... | head``),
    which left an execution half-run. Here the output is dropped from then on (stdout
    goes to /dev/null) and the command goes on to its usual end and exit code.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        discard_stdout()


def discard_stdout() -> None:
    """Send the rest of stdout to /dev/null (its reader closed the pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)

FILE_TREE_LIMIT = 200


class State:
    """Lazily built per invocation; closed when the command ends.

    ``current_execution`` is the id of the execution the command is driving (set
    by whoever starts or continues one), so Ctrl-C can say what to resume.
    """

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._remote: Remote | None | bool = False  # False: not looked up yet
        self.current_execution: str | None = None

    @property
    def remote(self) -> Remote | None:
        """The server's client after ``connectsw login`` (server mode), else None."""
        if self._remote is False:
            from connectsw.cli.remote import remote_for

            self._remote = remote_for(self.settings.data_dir)
        return self._remote  # type: ignore[return-value]

    @property
    def settings(self) -> Settings:
        """The process's settings (:func:`connectsw.conf.settings.get_settings`)."""
        from connectsw.conf.settings import get_settings

        return get_settings()

    @property
    def store(self) -> Store:
        """The configured store alone, for read-only commands: no engine, no dask imported.

        The process-wide store of ``settings.store_url``
        (:func:`connectsw.core.stores.get_store`), the same object the engine uses.
        Raises ConfigError for an invalid URL, StoreError when it cannot be opened.
        """
        from connectsw.core.stores import get_store

        return get_store(self.settings.store_url)

    @property
    def views(self) -> Views:
        """Read-only views over the store (imports nothing of Dask)."""
        from connectsw.core.views import Views

        return Views(self.store, self.settings.engine.lease_timeout)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # Imported here; the engine imports dask only when it first runs a stage.
            from connectsw.core.engine import Engine

            self._engine = Engine(self.settings)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


pass_state = click.make_pass_decorator(State, ensure=True)


def json_option(f: Any) -> Any:
    """``--json``: machine-readable output on stdout, nothing else there."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def interactive() -> bool:
    """True when a person can answer prompts."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("CI")


def _git(cwd: Path, *args: str) -> str:
    # Imported here: only commands that build a request context need it.
    import time

    from connectsw.core import supervisor
    from connectsw.core.workspace import SAFE_GIT_CONFIG

    try:
        outcome = supervisor.run(
            ["git", *SAFE_GIT_CONFIG, "-C", str(cwd), *args],
            cwd=cwd,
            deadline=time.monotonic() + 10,
            output_limit=64 * 1024,
            split_stderr=True,
        )
    except supervisor.SupervisorError:
        return ""
    return outcome.output.strip() if outcome.returncode == 0 else ""


def local_context(cwd: Path | None = None) -> RequestContext:
    """The request context: working directory, git info and (top of) the file tree."""
    from connectsw.core.errors import storable
    from connectsw.core.models import RequestContext

    cwd = cwd or Path.cwd()
    git_info: dict[str, Any] = {}
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    if branch:
        git_info = {"branch": branch, "commit": _git(cwd, "rev-parse", "HEAD")}
    try:
        tree = sorted(
            storable(p.name) + ("/" if p.is_dir() else "")
            for p in cwd.iterdir()
            if p.name != ".git"
        )[:FILE_TREE_LIMIT]
    except OSError:
        tree = []
    # A name that is not UTF-8 is shown with U+FFFD: the context is stored as JSON.
    return RequestContext(working_directory=storable(str(cwd)), git_info=git_info, file_tree=tree)
