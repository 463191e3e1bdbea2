"""Counted nouns in messages: ``1 task``, ``2 tasks``, ``no checkpoints``."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None, zero: str = "no") -> str:
    """``n`` and ``noun`` in agreement: ``counted(1, "task")`` is ``"1 task"``,
    ``counted(0, "task")`` ``"no tasks"``, ``counted(2, "memory", "memories")``
    ``"2 memories"``. ``zero`` replaces a count of 0 (``zero="0"`` keeps the digit)."""
    word = noun if n == 1 else plural or f"{noun}s"
    return f"{zero if n == 0 else n} {word}"
