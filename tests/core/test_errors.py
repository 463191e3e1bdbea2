"""Exceptions shown as one line."""

from __future__ import annotations

from connectsw.core.errors import NotFound, one_line


def test_one_line_keeps_the_first_line_only() -> None:
    assert one_line(ValueError("bad value\n  detail\n")) == "bad value"
    assert one_line(NotFound("  no execution 'x'  ")) == "no execution 'x'"


def test_typed_names_foreign_exceptions_but_not_ours() -> None:
    assert one_line(RuntimeError("kaboom\nmore"), typed=True) == "RuntimeError: kaboom"
    assert one_line(NotFound("no execution 'x'"), typed=True) == "no execution 'x'"


def test_an_empty_message_is_the_type_name() -> None:
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(TimeoutError("  "), typed=True) == "TimeoutError"
