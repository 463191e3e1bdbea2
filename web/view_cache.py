"""Rendered ``GET /v1/execution/{id}`` bodies, reused while nothing happened to the execution.

Every change of an execution writes an event, so the body rendered at event seq N
is still right while the execution's last seq is N: one indexed read per request
instead of the view's several. A body is reused for at most :data:`MAX_AGE`
seconds, as a status can also change with time alone (an owner whose lease lapsed
shows ``interrupted``). The license that owns an execution never changes and is
remembered. Written here: a dict with two checks, not worth a dependency.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: Seconds a rendered body is reused at most, even when no event arrived.
MAX_AGE = 1.0
MAX_ENTRIES = 10_000


class ViewCache:
    """Bodies by execution id, with the event seq they were rendered at."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._bodies: OrderedDict[str, tuple[int, float, bytes]] = OrderedDict()
        self._owners: OrderedDict[str, str | None] = OrderedDict()

    def owner(self, execution_id: str) -> tuple[bool, str | None]:
        """(known, license id) of the execution."""
        if execution_id in self._owners:
            return True, self._owners[execution_id]
        return False, None

    def remember_owner(self, execution_id: str, license_id: str | None) -> None:
        self._owners[execution_id] = license_id
        self._bound(self._owners)

    def get(self, execution_id: str, seq: int) -> bytes | None:
        hit = self._bodies.get(execution_id)
        if hit is None or hit[0] != seq or self.clock() - hit[1] > MAX_AGE:
            return None
        return hit[2]

    def put(self, execution_id: str, seq: int, body: bytes) -> None:
        self._bodies[execution_id] = (seq, self.clock(), body)
        self._bodies.move_to_end(execution_id)
        self._bound(self._bodies)

    @staticmethod
    def _bound(entries: OrderedDict[str, Any]) -> None:
        while len(entries) > MAX_ENTRIES:
            entries.popitem(last=False)
