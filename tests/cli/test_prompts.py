"""Prompts: answers, retries, end of input, and Ctrl-C whichever thread takes it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import click
import pytest

from connectsw.cli.prompts import ask_choice, ask_text, read_line


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """stdin is a pipe; the test writes what the person types to the yielded fd."""
    r, w = os.pipe()
    stdin = os.fdopen(r, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    yield w
    stdin.close()
    with contextlib.suppress(OSError):
        os.close(w)


def test_a_line_is_read_without_its_ending(typed: int) -> None:
    os.write(typed, "Add a dark mode ✓\r\n".encode())
    assert read_line("? ") == "Add a dark mode ✓"


def test_end_of_input_aborts(typed: int) -> None:
    os.close(typed)
    with pytest.raises(click.Abort):
        read_line("? ")


def test_a_choice_is_asked_again_until_it_is_one_of_the_keys(
    typed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    os.write(typed, b"x\n")
    later = threading.Timer(0.3, lambda: os.write(typed, b" A \n"))
    later.start()
    assert ask_choice("Decision", {"a": 1, "l": None}) == 1
    later.join()
    assert "'x' is not one of 'a', 'l'." in capsys.readouterr().err


def test_required_text_is_asked_again_when_blank(typed: int) -> None:
    os.write(typed, b"  \n")
    later = threading.Timer(0.3, lambda: os.write(typed, b"more tests\n"))
    later.start()
    assert ask_text("What should change?", required=True) == "more tests"
    later.join()
    os.write(typed, b"\n")
    assert ask_text("Feedback (optional)", required=False) == ""


def test_ctrl_c_taken_by_another_thread_ends_the_wait(typed: int) -> None:
    """input() would wait for ever: the read(2) in the main thread is never interrupted."""

    def ctrl_c_in_this_thread() -> None:
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    other = threading.Thread(target=ctrl_c_in_this_thread)
    started = time.monotonic()
    other.start()
    with pytest.raises(KeyboardInterrupt):
        read_line("Decision: ")
    other.join()
    assert time.monotonic() - started < 5
