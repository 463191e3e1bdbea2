"""Live progress from an execution's events (the same view for ``run`` and ``watch``)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from connectsw.core.errors import log_one_line
from connectsw.core.models import Event, Execution
from connectsw.core.states import TASK_DONE_EVENTS, EventKind
from connectsw.core.stores import Store

log = logging.getLogger("connectsw.progress")

POLL_SECONDS = 0.2
FINAL_TASK_EVENTS = TASK_DONE_EVENTS
STYLES: dict[str, str] = {
    EventKind.TASK_STARTED: "cyan",
    EventKind.TASK_SUCCEEDED: "green",
    EventKind.TASK_FAILED: "red",
    EventKind.TASK_RETRYING: "yellow",
    EventKind.TASK_SKIPPED: "yellow",
    EventKind.TASK_CANCELLED: "yellow",
    EventKind.TASK_INTERRUPTED: "yellow",
    EventKind.GATE_FAILED: "red",
    EventKind.GATE_PASSED: "green",
    EventKind.GATE_STOPPED: "yellow",
    EventKind.CHECKPOINT_REACHED: "magenta",
    EventKind.EXECUTION_FAILED: "red",
    EventKind.EXECUTION_COMPLETED: "green",
    EventKind.EXECUTION_CANCELLED: "yellow",
}
#: Characters of an event's first line shown live (``status ID --json`` has it all).
SHOWN_CHARS = 300
QUIET: set[str] = {
    EventKind.EXECUTION_ADVANCED,
    EventKind.EXECUTION_RUNNING,
    EventKind.EXECUTION_APPROVED,
}


def describe(event: Event) -> Text:
    """One line for an event; its text (from tasks, users and plugins) is never markup."""
    attempt = event.data.get("attempt")
    extra = f" (attempt {attempt})" if attempt and attempt > 1 else ""
    line = Text.assemble((f"{event.kind:<22}", STYLES.get(event.kind, "dim")), " ")
    if event.task_id:
        line.append(event.task_id, style="bold").append(" ")
    text = event.message.split("\n", 1)[0]
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "…"
    elif text != event.message:
        text += " …"
    return line.append(f"{text}{extra}")


def new_progress(console: Console) -> Progress:
    """The bar under the events: tasks done of all, time elapsed; gone at the end."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


class Follower:
    """Polls the store for an execution's events and renders them with a progress bar."""

    def __init__(self, store: Store, execution: Execution, console: Console, after: int = 0):
        self.store = store
        self.execution_id = execution.id
        self.console = console
        self.after = after
        self.total = len(execution.plan.tasks)
        self.progress = new_progress(console)
        self.bar = self.progress.add_task(execution.plan.name, total=self.total)
        self.done: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[Event]:
        """Render the events that arrived since the last poll."""
        events = self.store.events(self.execution_id, after=self.after)
        for event in events:
            self.after = event.seq
            if event.kind in FINAL_TASK_EVENTS and event.task_id:
                self.done.add(event.task_id)
                self.progress.update(self.bar, completed=len(self.done))
            if event.kind not in QUIET:
                self.progress.console.print(describe(event), soft_wrap=True)
        return events

    def follow_until(self, done: Callable[[], bool]) -> None:
        """Render events in the foreground until ``done()`` is true."""
        with self.progress:
            while True:
                self.poll()
                if done():
                    self.poll()
                    return
                time.sleep(POLL_SECONDS)

    def __enter__(self) -> Follower:
        self.progress.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        # A failed poll (the store gone away) is tried again at the next tick: the
        # thread does not die with a traceback, and says so once until it recovers
        # (trial 8b F8). The command itself reports the store's failure, in one line.
        failing = False
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as exc:
                if not failing:
                    log_one_line(log, "progress could not be read (retrying)", exc)
                failing = True
            else:
                failing = False

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if exc[0] is None:
                self.poll()
            else:  # the command's own error is the one to report, not a failed poll
                with contextlib.suppress(Exception):
                    self.poll()
        finally:
            self.progress.stop()
