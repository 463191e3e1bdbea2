"""The owner's run of a stage's gate rules: stoppable, and recorded for a new owner.

Gates run in the owner's process, not on a Dask worker, so the worker-side
monitor's stop reasons reach them through here: the commands gate rules start
(``supervisor.run_for(ctx, ...)``) are stopped, their whole process group, when
the execution is cancelled or the owner's lease is lost. Stop reasons come from
the lease's heartbeat thread and from this process's
:data:`~connectsw.core.monitor.monitor` (which reads the store every
:data:`~connectsw.core.monitor.POLL_SECONDS`). Each command's process group is
recorded in the store (fenced) when it starts, so that a new owner ends it
before its own gate run (:func:`~connectsw.core.leftovers.end_gate_leftover`); the
gate run itself is recorded (with no command) before its first rule runs.
"""

from __future__ import annotations

import logging

from connectsw.core.errors import ConnectSWError, LeaseLost
from connectsw.core.lease import Lease
from connectsw.core.monitor import CANCELLED, LEASE_LOST, monitor
from connectsw.core.stores import Store
from connectsw.core.supervisor import ProcessRef

log = logging.getLogger("connectsw.gates")


class GateRun:
    """One evaluation of a stage's gates by the lease holder (a context manager)."""

    def __init__(self, store: Store, execution_id: str, lease: Lease) -> None:
        self.store = store
        self.execution_id = execution_id
        self.lease = lease
        self._recorded = False

    def __enter__(self) -> GateRun:
        # Recorded before any rule runs (no command yet: ``{}``), so that an owner that
        # dies at any point of the run, even as its first command starts, leaves a
        # record: the next owner says ``gate.stopped`` (it failed under load when the
        # command began before its group was recorded).
        self.store.set_gate_process(self.execution_id, {}, token=self.lease.token)
        self._recorded = True
        monitor.enter(self.store, self.execution_id, self.lease.token)
        return self

    def __exit__(self, *exc: object) -> None:
        monitor.leave(self.execution_id, self.lease.token)
        if self._recorded:
            try:  # its commands have ended: nothing is left for a new owner to end
                self.store.set_gate_process(self.execution_id, None, token=self.lease.token)
            except LeaseLost:
                self.lease.lost.set()  # the new owner ends and clears it
            except ConnectSWError as err:  # a stale record names an ended group: harmless
                log.warning("execution %s: gate record not cleared: %s", self.execution_id, err)

    def should_stop(self) -> str | None:
        """Why the gate's commands must stop (``cancelled``, ``lease lost``), or None.

        Polled by the supervisor about every 0.1 s; reads no store itself.
        """
        if self.lease.lost.is_set():
            return LEASE_LOST
        if self.lease.cancelled.is_set():
            return CANCELLED
        return monitor.reason(self.execution_id, self.lease.token)

    def on_spawn(self, ref: ProcessRef) -> None:
        """Record a started command's process group (fenced: raises LeaseLost, which ends it)."""
        self.store.set_gate_process(self.execution_id, ref.to_dict(), token=self.lease.token)
        self._recorded = True
