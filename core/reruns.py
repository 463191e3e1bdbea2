"""Which task runs may be Dask re-running work it already did (the runner then looks first).

Dask runs a task again on its own in two cases: its worker died while running it
(``allowed-failures`` 0 makes that an error instead, see :mod:`connectsw.core.cluster`),
and its result was lost with a worker while a dependent still needed it (Dask
recomputes it; nothing turns that off). The runner must then refuse a second start
of an attempt that already has a record. Brief agents write their start with their
end, so refusing means reading the store first; reading it for every task costs a
round trip per task (about 0.2 ms on PostgreSQL, on each worker's one thread).

:class:`RerunMarker`, a scheduler plugin, marks a task in its annotations when it
leaves ``memory`` or ``processing`` for any state from which Dask could run it again;
the annotations reach the worker with the task. A run of an unmarked task is its
first, so the runner skips the read. Without the plugin (a scheduler that cannot
import ConnectSW) every run reads: correct, only slower.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from distributed import Client, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin

from connectsw.core.graph import KEY_PREFIX

log = logging.getLogger("connectsw.reruns")

#: The annotation a marked task carries.
MARK = "connectsw-may-rerun"
PLUGIN_NAME = "connectsw-rerun-marker"
_LEFT = frozenset({"memory", "processing"})
_AGAIN = frozenset({"released", "waiting", "queued", "no-worker"})


class RerunMarker(SchedulerPlugin):
    """Marks ConnectSW tasks that Dask may run a second time."""

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start not in _LEFT or finish not in _AGAIN:
            return
        if not (isinstance(key, tuple) and key and key[0] == KEY_PREFIX):
            return
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        if ts is not None:
            ts.annotations = {**(ts.annotations or {}), MARK: True}


_installed: weakref.WeakKeyDictionary[Client, bool] = weakref.WeakKeyDictionary()


def marks_reruns(client: Client) -> bool:
    """Whether the client's scheduler marks reruns (installing the plugin once per client)."""
    known = _installed.get(client)
    if known is None:
        known = _installed[client] = install(client)
    return known


def install(client: Client) -> bool:
    """Register :class:`RerunMarker` on the client's scheduler; False if it cannot be."""
    try:
        client.register_plugin(RerunMarker(), name=PLUGIN_NAME)
    except Exception as exc:  # e.g. the scheduler cannot unpickle it (no ConnectSW there)
        log.info("every task run will read the store first: %s", exc)
        return False
    return True


def may_be_rerun() -> bool:
    """Whether the task running in this thread may be a second run (True when unsure)."""
    try:
        from distributed.worker import thread_state

        key = thread_state.key
        ts = get_worker().state.tasks.get(key)
    except Exception:  # not on a worker (tests run tasks in-process): look
        return True
    if ts is None:
        return True
    return bool((ts.annotations or {}).get(MARK))
