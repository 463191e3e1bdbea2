"""Questions to the person at the terminal that a Ctrl-C always ends.

``input()`` (and so ``click.prompt``) blocks in read(2) and sees a SIGINT only
when that read is interrupted. The kernel may hand a signal sent to the
process to any thread that does not block it (signal(7)); a signal taken by a
Dask or progress thread, or one handled just before the read began, left the
prompt waiting for ever (found in CI: Ctrl-C at a checkpoint did nothing).
Here the main thread waits for the answer with select(2) and a short timeout,
so the interpreter runs pending signal handlers between waits and Ctrl-C
raises KeyboardInterrupt within ``POLL_SECONDS``.

Written here rather than taken from click: click's prompt has no hook for how
the line is read, other than replacing a private module global.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Mapping
from typing import TypeVar

import click

T = TypeVar("T")

POLL_SECONDS = 0.2
"""Longest wait (seconds) between two looks at pending signals while a prompt waits."""


def read_line(text: str) -> str:
    """Show ``text`` and return the line typed, without its line ending.

    Raises:
        click.Abort: end of input (Ctrl-D on an empty line).
        KeyboardInterrupt: Ctrl-C, after moving to a fresh line.
    """
    click.echo(text, nl=False)
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test runner's stream)
        line = sys.stdin.readline()
        if not line:
            raise click.Abort() from None
        return line.rstrip("\r\n")
    data = b""
    try:
        while not data.endswith(b"\n"):
            while not select.select([fd], [], [], POLL_SECONDS)[0]:
                pass
            # A terminal in canonical mode returns at most one line per read.
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    except KeyboardInterrupt:
        click.echo()
        raise
    if not data:
        click.echo()
        raise click.Abort()
    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    return data.decode(encoding, errors="replace").rstrip("\r\n")


def ask_choice(question: str, choices: Mapping[str, T]) -> T:
    """Ask until the answer is one of ``choices``' keys (case and spaces ignored).

    Raises:
        click.Abort: end of input.
        KeyboardInterrupt: Ctrl-C.
    """
    while True:
        answer = read_line(f"{question}: ").strip().lower()
        if answer in choices:
            return choices[answer]
        listed = ", ".join(repr(key) for key in choices)
        click.echo(f"Error: {answer!r} is not one of {listed}.", err=True)


def ask_text(question: str, *, required: bool) -> str:
    """Ask for free text; when ``required``, ask again until it is not blank.

    Raises:
        click.Abort: end of input.
        KeyboardInterrupt: Ctrl-C.
    """
    while True:
        answer = read_line(f"{question}: ").strip()
        if answer or not required:
            return answer
