"""The owner's lease on a running execution: claimed with a fencing token, heartbeated.

One process at a time runs an execution. It claims the lease by compare-and-set
on the execution's token (``token + 1``), heartbeats it every
``engine.heartbeat_interval`` seconds, and writes only with that token. When
another process takes the lease over (the owner went silent past
``engine.lease_timeout``, e.g. stopped by SIGSTOP), the old owner's heartbeat
fails, it stops its work, and every write it still attempts is refused
(:class:`~connectsw.core.errors.LeaseLost`).

Before a new owner runs anything, it ends what a previous owner left running
(:mod:`~connectsw.core.leftovers`): the next attempt or gate run never overlaps
with them (at-least-once, never concurrently).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from connectsw.core.errors import HeldElsewhere, LeaseLost, log_one_line
from connectsw.core.liveness import owner_alive
from connectsw.core.models import Execution, ExecutionStatus, utcnow
from connectsw.core.stores import Store

log = logging.getLogger("connectsw.lease")


class Lease:
    """This process's hold on one execution (use as a context manager for heartbeats)."""

    def __init__(
        self,
        store: Store,
        execution_id: str,
        owner: str,
        token: int,
        heartbeat_interval: float,
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.owner = owner
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        #: Called from the heartbeat thread when the lease is lost or the execution
        #: cancelled (the engine cancels the stage's Dask futures).
        self.on_stop: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="connectsw-lease", daemon=True)

    @classmethod
    def claim(
        cls,
        store: Store,
        execution: Execution,
        owner: str,
        lease_timeout: float,
        heartbeat_interval: float,
    ) -> Lease:
        """Take the lease of ``execution``.

        Raises:
            HeldElsewhere: a live owner holds it, or another process claimed it
                between this process's read and its compare-and-set.
        """
        if (
            execution.owner
            and execution.owner != owner
            and owner_alive(execution.owner, execution.heartbeat_at, lease_timeout)
        ):
            raise HeldElsewhere(f"execution {execution.id} is being run by {execution.owner}")
        token = store.claim(execution.id, owner, execution.lease_token, utcnow())
        if token is None:
            raise HeldElsewhere(f"execution {execution.id} was taken over by another process")
        execution.owner, execution.lease_token = owner, token
        return cls(store, execution.id, owner, token, heartbeat_interval)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.store.release(self.execution_id, self.owner, self.token, utcnow())
        except Exception as err:  # the lease then expires by itself
            log.warning("could not release %s: %s", self.execution_id, err)

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another process took the lease over."""
        if self.lost.is_set():
            raise LeaseLost(
                f"execution {self.execution_id} was taken over by another process; "
                "this one stopped its work"
            )

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self.heartbeat_interval):
            try:
                if not self.store.heartbeat(self.execution_id, self.owner, self.token, utcnow()):
                    self.lost.set()
                elif self.store.execution_status(self.execution_id) is ExecutionStatus.CANCELLED:
                    self.cancelled.set()
            except Exception as exc:  # a missed heartbeat is retried at the next tick
                # One line until it recovers, not a traceback per tick (trial 8b F8).
                if not failing:
                    log_one_line(log, f"heartbeat failed for {self.execution_id} (retrying)", exc)
                failing = True
                continue
            if failing:
                log.warning("heartbeat of %s works again", self.execution_id)
                failing = False
            if (self.lost.is_set() or self.cancelled.is_set()) and self.on_stop is not None:
                try:
                    self.on_stop()
                except Exception:
                    log.exception("stopping the work of %s failed", self.execution_id)
            if self.lost.is_set():
                return
