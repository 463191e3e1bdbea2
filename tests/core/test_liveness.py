"""Shown status: an execution whose process is gone is INTERRUPTED, pending ones too."""

from __future__ import annotations

import socket
import subprocess
from datetime import timedelta

from connectsw.core.liveness import shown_status, this_owner
from connectsw.core.models import Execution, ExecutionStatus, Plan, Request, utcnow

E = ExecutionStatus


def execution(status: E, owner: str | None, age: float = 0.0) -> Execution:
    now = utcnow()
    return Execution(
        request=Request(command="run", args=["g.yaml"]),
        plan=Plan(name="p", workflow="task-graph", tasks=[], stages=[]),
        workspace="/w",
        status=status,
        owner=owner,
        heartbeat_at=now if owner else None,
        updated_at=now - timedelta(seconds=age),
    )


def dead_owner() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}"


def test_executing_or_pending_with_a_dead_owner_is_interrupted() -> None:
    for status in (E.EXECUTING, E.PENDING):
        assert shown_status(execution(status, dead_owner()), 30) is E.INTERRUPTED
        assert shown_status(execution(status, this_owner()), 30) is status


def test_a_pending_execution_nobody_claimed_is_interrupted_after_the_lease_timeout() -> None:
    assert shown_status(execution(E.PENDING, None, age=1), 30) is E.PENDING
    assert shown_status(execution(E.PENDING, None, age=31), 30) is E.INTERRUPTED


def test_other_states_are_shown_as_they_are() -> None:
    for status in (E.AWAITING_CHECKPOINT, E.COMPLETED, E.FAILED, E.CANCELLED):
        assert shown_status(execution(status, dead_owner()), 30) is status
