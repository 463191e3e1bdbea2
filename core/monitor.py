"""Worker side: why a running attempt must stop (cancel, lease lost, owner died).

Each process that runs attempts (a Dask worker, or the owner with a threads-only
cluster) keeps one :class:`AttemptMonitor`. While attempts of an execution run
here, a daemon thread reads that execution's status and lease every
:data:`POLL_SECONDS` (two cheap reads per execution, not per attempt) and
records a stop reason that the attempts poll without touching the store:

- ``cancelled``: the execution was cancelled;
- ``lease lost``: another process took the lease over (its fencing token moved);
- ``owner died``: the owner's process, on this host, is gone;
- ``interrupted``: the owner was interrupted (Ctrl-C) and told this process so
  (:func:`stop_attempts`, run on every worker): no store read is waited for.

The supervisor kills an attempt's process group on a stop reason; the runner
then records the attempt as the reason says (:data:`STOP_STATUS`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field

from connectsw.core.models import ExecutionStatus, TaskStatus
from connectsw.core.stores import Store

log = logging.getLogger("connectsw.monitor")

POLL_SECONDS = 0.5
CANCELLED = "cancelled"
LEASE_LOST = "lease lost"
OWNER_DIED = "owner died"
INTERRUPTED = "interrupted"

#: How an attempt stopped for a reason is recorded (None: not at all, it is fenced out).
STOP_STATUS: dict[str, TaskStatus | None] = {
    CANCELLED: TaskStatus.CANCELLED,
    LEASE_LOST: None,
    OWNER_DIED: TaskStatus.INTERRUPTED,
    INTERRUPTED: TaskStatus.INTERRUPTED,
}


@dataclass
class _Watched:
    store: Store
    token: int
    running: int = 0
    reason: str | None = None
    checked: bool = False
    waiters: list[threading.Event] = field(default_factory=list)


class AttemptMonitor:
    """Stop reasons of the executions whose attempts run in this process."""

    def __init__(self, poll: float = POLL_SECONDS) -> None:
        self.poll = poll
        self._lock = threading.Lock()
        self._watched: dict[tuple[str, int], _Watched] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: Stop reasons told to this process for attempts that had not started here.
        self._told: dict[tuple[str, int], str] = {}

    def enter(self, store: Store, execution_id: str, token: int) -> None:
        """An attempt of ``execution_id`` (holding lease ``token``) starts here."""
        with self._lock:
            w = self._watched.get((execution_id, token))
            if w is None:
                w = self._watched[(execution_id, token)] = _Watched(store, token)
                w.reason = self._told.get((execution_id, token))
            w.running += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="connectsw-monitor", daemon=True
                )
                self._thread.start()

    def leave(self, execution_id: str, token: int) -> None:
        """That attempt ended."""
        with self._lock:
            w = self._watched.get((execution_id, token))
            if w is not None:
                w.running -= 1

    def reason(self, execution_id: str, token: int) -> str | None:
        """Why attempts of this execution must stop, or None (no store access)."""
        w = self._watched.get((execution_id, token))
        return w.reason if w is not None else None

    def stop(self, execution_id: str, token: int, reason: str, *, told: bool = False) -> None:
        """Record a stop reason learnt elsewhere (e.g. a fenced write was refused);
        ``told``: also for the attempts of that execution and token that start later
        (the owner said so: they must not start)."""
        with self._lock:
            if told:
                self._told[(execution_id, token)] = reason
            w = self._watched.get((execution_id, token))
            if w is not None and w.reason is None:
                w.reason = reason

    def check_now(self, execution_id: str, token: int) -> str | None:
        """Read the store now for this execution (before an attempt starts)."""
        with self._lock:
            w = self._watched.get((execution_id, token))
        if w is None:
            return None
        if not w.checked and w.reason is None:  # a reason told already needs no read
            self._check(execution_id, w)
        return w.reason

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.poll)
            with self._lock:
                items = list(self._watched.items())
                # Forget executions with no attempt here that have a final answer.
                for key, w in items:
                    if w.running <= 0 and (w.reason is not None or w.checked):
                        self._watched.pop(key, None)
            for (execution_id, _), w in items:
                if w.running > 0 and w.reason is None:
                    self._check(execution_id, w)

    def _check(self, execution_id: str, w: _Watched) -> None:
        try:
            lease = w.store.lease(execution_id)
            status = w.store.execution_status(execution_id)
        except Exception as exc:  # the next poll tries again
            log.warning("cannot read execution %s: %s", execution_id, exc)
            return
        w.checked = True
        reason = None
        if status is ExecutionStatus.CANCELLED:
            reason = CANCELLED
        elif lease is None or lease.token != w.token:
            reason = LEASE_LOST
        elif lease.owner and not _owner_alive_here(lease.owner):
            reason = OWNER_DIED
        if reason is not None:
            with self._lock:
                if w.reason is None:
                    w.reason = reason


def stop_attempts(execution_id: str, token: int, reason: str = INTERRUPTED) -> int:
    """Stop this process's attempts of ``execution_id`` under lease ``token`` now, and
    refuse to start its later ones (run on each worker by the interrupted owner,
    :meth:`~connectsw.core.stage.StageRun.interrupt`). Each attempt's supervisor ends
    its process group (TERM, grace, KILL) within its 0.1 s poll, and the runner records
    it as :data:`STOP_STATUS` says. Returns how many attempts ran here."""
    monitor.stop(execution_id, token, reason, told=True)
    w = monitor._watched.get((execution_id, token))
    return max(w.running, 0) if w is not None else 0


def _owner_alive_here(owner: str) -> bool:
    """False only when ``owner`` (``host:pid``) is a process of this host that is gone."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` of this host exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


monitor = AttemptMonitor()
