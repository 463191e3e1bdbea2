"""The server's usage log: append-only JSON-line segments, compacted to Parquet.

**Writing** (:class:`UsageLog`, on the event loop): each request's event is one
JSON line (format: :mod:`connectsw.licensing.usage`) appended with one
``write(2)`` to the process's current segment, before the response is sent.
Once ``write`` returns the bytes are in the kernel's page cache: a ``kill -9`` of
the server loses none of them (a crash of the machine may lose the last ones:
segments are not fsynced per request; the Parquet files are, before a segment is
deleted). A line cut short by a kill inside ``write`` belongs to a request that was
never answered, and is skipped.

**Segments** are ``LOG_DIR/<start ns>-<pid>-<random>.jsonl``. The writer holds an
exclusive ``flock`` on its current segment for as long as it appends to it (a
segment is created under a hidden name, locked, then renamed, so no other
process can take it in between). It rotates to a new segment every
``segment_events`` events or ``segment_seconds`` seconds (checked by the caller's
timer), at a clean stop, and the closed one is compacted.

**Compaction** (:func:`compact_segment`, in a worker thread) of one closed segment:
take its lock (a segment being written or compacted elsewhere is left alone),
parse its lines, write one Parquet file per UTC date,
``usage/date=YYYY-MM-DD/<segment name>.parquet`` (temporary name, fsync, rename),
insert the audit records that are not stored yet (by event id), and only then
delete the segment. The file names depend only on the segment, so a compaction
killed at any step is simply run again (:func:`recover`, at the next start, and
after each rotation): it overwrites the same files with the same rows and skips
audit rows already stored. No event is lost or counted twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectsw.core.stores import Store
from connectsw.licensing.usage import TS_KEY, audit_record, fsync_dir, utc_date, write_parquet

log = logging.getLogger("connectsw.usage")

SUFFIX = ".jsonl"


@dataclass
class Segment:
    """One log file. ``audited`` turns False if a flush of its audit records failed:
    its compaction then writes them."""

    path: Path
    fd: int = -1
    events: int = 0
    opened_at: float = 0.0
    audited: bool = field(default=True)


@dataclass
class Batch:
    """Events appended since the last :meth:`UsageLog.take`, all in ``segment``;
    ``rotated``: the segment is closed and due for compaction."""

    events: list[dict[str, Any]]
    segment: Segment
    rotated: bool


def segments(log_dir: Path) -> list[Path]:
    """The log's segments, oldest first (by name: start time first)."""
    try:
        return sorted(p for p in log_dir.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []


class UsageLog:
    """The process's writer: one segment at a time, locked while written."""

    def __init__(
        self,
        log_dir: Path,
        segment_events: int = 10_000,
        segment_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = log_dir
        self.segment_events = segment_events
        self.segment_seconds = segment_seconds
        self.clock = clock
        log_dir.mkdir(parents=True, exist_ok=True)
        self._pending: list[dict[str, Any]] = []
        self._segment = self._open()

    def _open(self) -> Segment:
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        hidden = self.log_dir / f".{name}.new"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.log_dir / name
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            raise
        return Segment(path, fd, opened_at=self.clock())

    def append(self, event: dict[str, Any]) -> bool:
        """Write one event (one ``write(2)``); True when the segment is full
        (call :meth:`take`). Raises OSError if the line could not be written."""
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        seg = self._segment
        written = os.write(seg.fd, line)
        while written < len(line):  # a short write (a full disk, a signal): finish it
            written += os.write(seg.fd, line[written:])
        seg.events += 1
        self._pending.append(event)
        return seg.events >= self.segment_events

    @property
    def full(self) -> bool:
        """The segment has its events, or its time: rotate at the next :meth:`take`."""
        seg = self._segment
        return seg.events >= self.segment_events or (
            seg.events > 0 and self.clock() - seg.opened_at >= self.segment_seconds
        )

    def take(self, rotate: bool | None = None) -> Batch:
        """The events since the last call; rotates to a new segment if ``rotate``, or by
        default if :attr:`full`. The closed segment is unlocked: compact it."""
        events, self._pending = self._pending, []
        seg = self._segment
        rotated = self.full if rotate is None else rotate
        if rotated:
            self._segment = self._open()
            os.close(seg.fd)
            seg.fd = -1
        return Batch(events, seg, rotated)

    def close(self) -> Segment:
        """Close the current segment (unlocking it) without opening another."""
        seg = self._segment
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        return seg


def _read_events(data: bytes, path: Path) -> list[dict[str, Any]]:
    events = []
    lines = data.split(b"\n")
    if lines[-1]:  # no newline at the end: a write cut short, never acknowledged
        log.warning("usage log %s: skipped a torn last line (%d bytes)", path, len(lines[-1]))
    for number, line in enumerate(lines[:-1], 1):
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            log.error("usage log %s: line %d is not JSON; skipped", path, number)
    return events


def compact_segment(path: Path, usage_dir: Path, store: Store | None) -> int | None:
    """Move a closed segment's events to Parquet (and, with ``store``, to the audit log),
    then delete it. Returns how many events it held; None if another process holds it
    (writing or compacting), 0 if it was gone.

    Safe to run again after a kill at any step: the same files are rewritten and
    stored audit records are skipped.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not path.exists():  # compacted by another process while we waited
            return 0
        with os.fdopen(os.dup(fd), "rb") as f:
            events = _read_events(f.read(), path)
        by_date: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_date.setdefault(utc_date(event[TS_KEY]), []).append(event)
        name = path.name.removesuffix(SUFFIX) + ".parquet"
        for date in sorted(by_date):
            write_parquet(usage_dir / f"date={date}" / name, by_date[date])
        if store is not None and events:
            store.add_audit_records([audit_record(e) for e in events])
        path.unlink()
        fsync_dir(path.parent)
        return len(events)
    finally:
        os.close(fd)


def recover(log_dir: Path, usage_dir: Path, store: Store) -> int:
    """Compact every segment no live process holds (left by a killed server, or by a
    compaction that failed); returns how many events they held. A segment that
    cannot be compacted now (e.g. the store is down) is kept for the next run."""
    total = 0
    for path in segments(log_dir):
        try:
            total += compact_segment(path, usage_dir, store) or 0
        except Exception:
            log.exception("usage log %s: compaction failed; kept for the next run", path)
    return total
