"""Counted nouns in messages (core/wording.py)."""

from __future__ import annotations

from connectsw.core.wording import counted


def test_counted_agrees_in_number() -> None:
    assert counted(1, "task") == "1 task"
    assert counted(2, "task") == "2 tasks"
    assert counted(0, "checkpoint") == "no checkpoints"
    assert counted(1, "memory", "memories") == "1 memory"
    assert counted(3, "memory", "memories") == "3 memories"
    assert counted(0, "retry", "retries", zero="0") == "0 retries"
