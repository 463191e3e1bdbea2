"""Every API request becomes a usage event and an audit record (issue 6 part 10).

The middleware (outermost: it sees the final status, rate-limit refusals and
errors included) appends the request's event to the usage log
(:mod:`connectsw.licensing.usagelog`) with one ``write(2)`` before the response
leaves, so an answered request's event survives ``kill -9``. If that write fails
the request is answered 503 ``usage_log_unavailable`` instead: no request is
acknowledged without its record.

Who made the request is what authentication found (``web/sessions.py`` stashes
the :class:`License` and the session on the request); the address is
:func:`connectsw.web.clientip.client_ip`'s (trusted-proxy handling); the endpoint
is the route template, never the path as sent (no id, key or token in it).

Off the request path, one worker thread (:class:`UsageWriter`) writes the audit
records in batches every ``server.usage_flush_seconds`` (one store transaction per
batch) and compacts each closed segment to Parquet. At startup the segments of a
server that died are recovered first; a clean stop flushes and compacts all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from connectsw.conf.settings import Settings
from connectsw.core.stores import Store
from connectsw.licensing.models import License
from connectsw.licensing.tiers import Tier
from connectsw.licensing.usage import TS_KEY, USAGE_DIR, audit_record
from connectsw.licensing.usagelog import Batch, UsageLog, compact_segment, recover
from connectsw.web.clientip import client_ip
from connectsw.web.errors import error_response
from connectsw.web.sessions import LICENSE, SESSION

log = logging.getLogger("connectsw.usage")

LOG_DIR = "usage-log"
"""Under the data dir: the append-only segments not yet compacted."""
MAX_TEXT = 256
"""User agents (and addresses) are cut to this many characters."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UsageWriter:
    """The server's usage log and the worker thread that empties it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        server = settings.server
        data = settings.data_dir.expanduser()
        self.store = store
        self.log_dir = data / LOG_DIR
        self.usage_dir = data / USAGE_DIR
        self.flush_seconds = server.usage_flush_seconds
        self.log = UsageLog(self.log_dir, server.usage_segment_events, server.usage_segment_seconds)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="connectsw-usage")
        self._closed = False

    def record(self, event: dict[str, Any]) -> None:
        """Append one event (raises OSError if it could not be written)."""
        if self._closed:
            raise OSError("the usage log is closed")
        if self.log.append(event):  # the segment is full: compact it now
            self._submit(self.log.take(rotate=True))

    def _submit(self, batch: Batch) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._worker, self._write, batch)

    async def flush(self) -> None:
        """Write the pending audit records; compact the segment if its time is up."""
        batch = self.log.take()
        if batch.events or batch.rotated:
            await self._submit(batch)

    async def run(self) -> None:
        """Flush every ``flush_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:
                log.exception("usage log: flush failed")

    async def close(self) -> None:
        """Write and compact everything (clean stop); no segment is left behind."""
        self._closed = True
        batch = self.log.take(rotate=False)
        self.log.close()
        await self._submit(Batch(batch.events, batch.segment, rotated=True))
        self._worker.shutdown(wait=True)

    def _write(self, batch: Batch) -> None:
        """In the worker thread: audit records, then (if closed) the segment's compaction."""
        seg = batch.segment
        if batch.events:
            try:
                self.store.add_audit_records([audit_record(e) for e in batch.events])
            except Exception:  # kept in the segment: its compaction writes them
                log.exception("usage log: audit records not written; retried at compaction")
                seg.audited = False
        if batch.rotated:
            try:
                compact_segment(seg.path, self.usage_dir, None if seg.audited else self.store)
            except Exception:
                log.exception("usage log %s: compaction failed; kept for the next run", seg.path)
            # Segments whose compaction failed before, or left by a server that died.
            recover(self.log_dir, self.usage_dir, self.store)


async def usage_resources(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: recover a dead server's log, write while serving, flush at stop."""
    from connectsw.web.app import SETTINGS, STORE, USAGE

    settings, store = app[SETTINGS], app[STORE]
    loop = asyncio.get_running_loop()
    data = settings.data_dir.expanduser()
    recovered = await loop.run_in_executor(None, recover, data / LOG_DIR, data / USAGE_DIR, store)
    if recovered:
        log.info("usage log: recovered %d events of a previous run", recovered)
    writer = app[USAGE] = await loop.run_in_executor(None, UsageWriter, settings, store)
    task = asyncio.create_task(writer.run())
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    await writer.close()


def _text(value: str) -> str:
    """Header text as valid UTF-8 (Parquet needs it), cut to :data:`MAX_TEXT`."""
    return value[:MAX_TEXT].encode("utf-8", "replace").decode("utf-8")


def _tier(license_id: str) -> str | None:
    """The tier named in a public id ``CSFW-TIER-RANDOM``."""
    parts = license_id.split("-")
    return parts[1] if len(parts) == 3 and parts[1] in Tier.__members__ else None


def event_of(
    request: web.Request,
    ts_us: int,
    latency_ms: float,
    status: int,
    response: web.StreamResponse | None,
) -> dict[str, Any]:
    """The usage event (and audit record) of a request, DESIGN.md's columns."""
    license: License | None = request.get(LICENSE)
    session = request.get(SESSION)
    license_id = license.id if license is not None else getattr(session, "license_id", None)
    if license is not None:
        tier: str | None = license.tier.value
    else:
        tier = _tier(license_id) if license_id else None
    resource = request.match_info.route.resource
    bytes_out = 0
    if response is not None:
        length = response.content_length
        bytes_out = length if length is not None else response.body_length
    error_code = response.headers.get("X-Error-Code") if response is not None else None
    return {
        "event_id": str(uuid.uuid4()),
        TS_KEY: ts_us,
        "license_id": license_id,
        "tier": tier,
        "user_id": None,  # licenses have no users yet
        "session_id": getattr(session, "id", None),
        "ip": _text(client_ip(request)),
        "country": None,  # filled at ingest (issue 7)
        "asn": None,
        "method": request.method,
        "endpoint": resource.canonical if resource is not None else "unmatched",
        "status": status,
        "latency_ms": latency_ms,
        "bytes_in": request.content_length or 0,
        "bytes_out": bytes_out,
        "user_agent": _text(request.headers.get("User-Agent", "")),
        "error_code": error_code,
    }


def usage_middleware(writer: Callable[[web.Request], UsageWriter]) -> Middleware:
    """Records every request; outermost, so it sees what the client gets."""

    @web.middleware
    async def usage(request: web.Request, handler: Handler) -> web.StreamResponse:
        ts_us = time.time_ns() // 1000
        start = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect or the like, raised through
            with _logged():
                _record(writer(request), request, ts_us, start, exc.status, None)
            raise
        except asyncio.CancelledError:  # the client went away: nothing was acknowledged
            with _logged():
                _record(writer(request), request, ts_us, start, 499, None)
            raise
        try:
            _record(writer(request), request, ts_us, start, response.status, response)
        except OSError:
            log.exception("usage log: cannot record %s %s", request.method, request.path)
            if not response.prepared:
                return error_response(
                    "usage_log_unavailable", "the server cannot record requests now", 503
                )
        return response

    return usage


@contextmanager
def _logged() -> Iterator[None]:
    try:
        yield
    except OSError:
        log.exception("usage log: cannot record a request")


def _record(
    writer: UsageWriter,
    request: web.Request,
    ts_us: int,
    start: float,
    status: int,
    response: web.StreamResponse | None,
) -> None:
    latency_ms = (time.perf_counter() - start) * 1000.0
    writer.record(event_of(request, ts_us, latency_ms, status, response))
