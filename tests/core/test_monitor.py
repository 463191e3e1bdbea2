"""The workers' attempt monitor: stop reasons the interrupted owner tells it."""

from __future__ import annotations

from typing import Any

from connectsw.core.models import TaskStatus
from connectsw.core.monitor import INTERRUPTED, STOP_STATUS, monitor, stop_attempts


class _Unreadable:
    """A store this process cannot read: reasons must come without reading it."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.reads.append(name)
        raise OSError(f"the store was read ({name})")


def test_an_interrupted_owner_stops_running_attempts_and_later_ones_at_once() -> None:
    """Trial 7, F8: on Ctrl-C the owner tells each worker to stop the execution's
    attempts now (no store poll waited for), and one that would start later never does."""
    unreadable = _Unreadable()
    store: Any = unreadable
    monitor.enter(store, "exec_f8", 7)
    try:
        assert monitor.reason("exec_f8", 7) is None
        assert stop_attempts("exec_f8", 7) == 1  # one attempt ran here
        assert monitor.reason("exec_f8", 7) == INTERRUPTED
    finally:
        monitor.leave("exec_f8", 7)
    with monitor._lock:
        monitor._watched.pop(("exec_f8", 7), None)  # forgotten, as the monitor's loop does
    monitor.enter(store, "exec_f8", 7)  # an attempt queued before the interrupt
    try:
        unreadable.reads.clear()
        assert monitor.check_now("exec_f8", 7) == INTERRUPTED
        assert unreadable.reads == []
    finally:
        monitor.leave("exec_f8", 7)
    assert STOP_STATUS[INTERRUPTED] is TaskStatus.INTERRUPTED
    # Another lease (the next run's token) is not stopped.
    assert monitor.reason("exec_f8", 8) is None
