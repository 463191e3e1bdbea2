"""Rendered views are reused only while the execution's last event is the same, and briefly."""

from __future__ import annotations

from connectsw.web.view_cache import MAX_AGE, ViewCache


def test_a_new_event_or_age_renders_the_view_again() -> None:
    now = [100.0]
    cache = ViewCache(clock=lambda: now[0])
    cache.put("exec_1", 7, b"seven")
    assert cache.get("exec_1", 7) == b"seven"
    assert cache.get("exec_1", 8) is None  # something happened since
    now[0] += MAX_AGE + 0.01
    assert cache.get("exec_1", 7) is None  # too old: a status may change with time alone
    assert cache.get("exec_2", 7) is None


def test_owners_are_remembered() -> None:
    cache = ViewCache()
    assert cache.owner("exec_1") == (False, None)
    cache.remember_owner("exec_1", "CSFW-PRO-A")
    cache.remember_owner("exec_2", None)
    assert cache.owner("exec_1") == (True, "CSFW-PRO-A")
    assert cache.owner("exec_2") == (True, None)
