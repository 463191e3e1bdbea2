"""Who runs an execution, and whether that process is still alive."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from connectsw.core.models import Execution, ExecutionStatus, utcnow
from connectsw.core.monitor import pid_alive


def this_owner() -> str:
    """Owner id of this process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None, heartbeat_at: datetime | None, lease_timeout: float) -> bool:
    """True if ``owner`` still runs: its pid exists here, or its heartbeat is fresh."""
    if not owner:
        return False
    fresh = heartbeat_at is not None and utcnow() - heartbeat_at < timedelta(seconds=lease_timeout)
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if not pid_alive(int(pid)):
            return False
        # A live pid with a stale heartbeat may be a reused pid, or a stopped process:
        # either way it does not hold the lease any more.
        return fresh or int(pid) == os.getpid()
    return fresh


def shown_status(execution: Execution, lease_timeout: float) -> ExecutionStatus:
    """The status to show: INTERRUPTED when the process that runs it is gone.

    That is an EXECUTING execution whose owner died, and a PENDING one whose
    owner died while starting it (e.g. killed while the cluster started), or that
    no process claimed within ``lease_timeout`` seconds of its creation (its
    creator died between planning and starting it). ``status ID`` then continues it.
    """
    status = execution.status
    if status not in (ExecutionStatus.EXECUTING, ExecutionStatus.PENDING):
        return status
    if owner_alive(execution.owner, execution.heartbeat_at, lease_timeout):
        return status
    if status is ExecutionStatus.PENDING and execution.owner is None:
        unclaimed = utcnow() - execution.updated_at
        if unclaimed < timedelta(seconds=lease_timeout):
            return status  # just created: its creator is about to start it
    return ExecutionStatus.INTERRUPTED
