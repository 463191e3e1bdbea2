"""Deferred "task started" records: a fast task writes its start and end in one commit.

A task's start is kept in memory for up to ``DELAY`` seconds. If the task ends
first, the start is written in the same transaction as the result; otherwise a
background thread writes it (so a long task shows as running within ``DELAY``).
Losing a start in a crash loses nothing: the attempt simply runs again.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

from connectsw.core.events import dispatch
from connectsw.core.models import Event, TaskResult
from connectsw.core.stores import Store

DELAY = 0.05


@dataclass
class _Start:
    due: float
    store: Store
    result: TaskResult
    event: Event


class StartLog:
    """Pending starts of this process's tasks, flushed by one daemon thread."""

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self._pending: dict[int, _Start] = {}
        self._ids = itertools.count()
        # Held while flushing, so a task's end is never written before its flushed start.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, store: Store, result: TaskResult, event: Event) -> int:
        """Remember a start; returns the token to :meth:`take` it back."""
        token = next(self._ids)
        with self._lock:
            self._pending[token] = _Start(time.monotonic() + self.delay, store, result, event)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="connectsw-startlog", daemon=True
                )
                self._thread.start()
        return token

    def take(self, token: int) -> Event | None:
        """The start's event if it was not written yet (the caller writes it), else None."""
        with self._lock:
            start = self._pending.pop(token, None)
        return start.event if start is not None else None

    def _loop(self) -> None:
        while True:
            time.sleep(self.delay / 2)
            now = time.monotonic()
            with self._lock:
                due = [t for t, s in self._pending.items() if s.due <= now]
                starts = [self._pending.pop(t) for t in due]
                by_store: dict[int, list[_Start]] = {}
                for s in starts:
                    by_store.setdefault(id(s.store), []).append(s)
                for group in by_store.values():
                    try:
                        written = group[0].store.save_task_results(
                            [s.result for s in group], [s.event for s in group]
                        )
                    except Exception:  # the store is unreachable: the ends will say it all
                        continue
                    dispatch(written)


start_log = StartLog()
