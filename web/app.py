"""The API server's application: app factory, shared objects (AppKeys), health endpoints.

Routes of each area live in their own module (``web/sessions.py``, ...); every
error leaves in one JSON shape (``web/errors.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import web

from connectsw.conf.settings import Settings
from connectsw.core.models import ApiModel
from connectsw.core.stores import Store, open_store
from connectsw.licensing.ipwatch import RecentIPs
from connectsw.licensing.secrets import license_secret
from connectsw.licensing.service import Licenses
from connectsw.licensing.sessions import Sessions
from connectsw.web.errors import ApiError, errors_middleware
from connectsw.web.keys import KeyCache
from connectsw.web.metrics import Metrics
from connectsw.web.ratelimit import RateLimits, ratelimit_middleware
from connectsw.web.runs import Runs, Uploads
from connectsw.web.scans import scan_periodically
from connectsw.web.session_cache import SessionCache
from connectsw.web.usage import UsageWriter, usage_middleware, usage_resources
from connectsw.web.view_cache import ViewCache

log = logging.getLogger("connectsw.web")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
LICENSES = web.AppKey("licenses", Licenses)
SESSIONS = web.AppKey("sessions", Sessions)
KEYS = web.AppKey("keys", KeyCache)
LIMITS = web.AppKey("limits", RateLimits)
RECENT_IPS = web.AppKey("recent_ips", RecentIPs)
METRICS = web.AppKey("metrics", Metrics)
SESSION_CACHE = web.AppKey("session_cache", SessionCache)
RUNS = web.AppKey("runs", Runs)
VIEWS = web.AppKey("views", ViewCache)
UPLOADS = web.AppKey("uploads", Uploads)
USAGE = web.AppKey("usage", UsageWriter)

MAX_BODY = 1_048_576
"""Request bodies above 1 MiB are refused (413)."""


def make_app(settings: Settings) -> web.Application:
    """The v1 API. The store opens at startup and closes at cleanup.

    Raises ConfigError at startup for a missing secret in production mode.
    """
    from connectsw.web import admin, admin_analytics, executions, memory, openapi, sessions

    metrics = Metrics()
    app = web.Application(
        middlewares=[
            usage_middleware(lambda r: r.app[USAGE]),
            metrics.middleware(),
            ratelimit_middleware(lambda r: r.app[LIMITS]),
            errors_middleware,
        ],
        client_max_size=MAX_BODY,
    )
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[LIMITS] = RateLimits(settings.server.ip_rate_limit)
    app[RECENT_IPS] = RecentIPs()
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(usage_resources)  # stops first: flushes while the store is open
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics.handler)
    openapi.add_paths(app, _openapi_paths())
    openapi.add_routes(app)
    sessions.add_routes(app)
    executions.add_routes(app)
    memory.add_routes(app)
    admin.add_routes(app)
    admin_analytics.add_routes(app)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    lic = settings.licensing
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, open_store, settings.store_url)
    secret = license_secret(settings)
    licenses = Licenses(store, secret, lic.tiers)
    app[STORE] = store
    app[LICENSES] = licenses
    app[METRICS].count_licenses(licenses.active_by_tier)
    sessions = app[SESSIONS] = Sessions(store, lic.session_ttl, lic.session_heartbeat_timeout)
    app[SESSION_CACHE] = SessionCache(sessions, lic.key_cache_seconds)
    app[KEYS] = KeyCache(licenses, lic.key_cache_seconds)
    app[UPLOADS] = Uploads(settings)
    app[VIEWS] = ViewCache()
    runs = app[RUNS] = Runs(settings, settings.server.run_workers, app[METRICS].run_ended)
    watcher = asyncio.create_task(_resume_interrupted(runs, settings.engine.lease_timeout / 2))
    scanner = asyncio.create_task(scan_periodically(settings, store, app[METRICS].scanned))
    yield
    watcher.cancel()
    scanner.cancel()
    await loop.run_in_executor(None, runs.close)
    await loop.run_in_executor(None, store.close)


async def _resume_interrupted(runs: Runs, every: float) -> None:
    """Every ``every`` seconds (half the lease timeout), continue the executions whose
    server died mid-run: nothing a license started is left half done by a crash."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            started = await loop.run_in_executor(None, runs.resume_interrupted)
        except Exception:  # the store is down: try again next time
            log.warning("could not look for interrupted executions", exc_info=True)
        else:
            for execution_id in started:
                log.warning("continuing %s: its server stopped mid-run", execution_id)
        await asyncio.sleep(every)


class Health(ApiModel):
    """``/healthz`` (``ok``) and ``/readyz`` (``ready``)."""

    status: Literal["ok", "ready"]


async def healthz(request: web.Request) -> web.Response:
    """The process answers."""
    return web.json_response(Health(status="ok").to_api())


async def readyz(request: web.Request) -> web.Response:
    """The store answers a read."""
    store = request.app[STORE]
    try:
        await asyncio.get_running_loop().run_in_executor(None, store.list_licenses, 1)
    except Exception:
        raise ApiError("not_ready", "the store does not answer", 503) from None
    return web.json_response(Health(status="ready").to_api())


def _probe(operation_id: str, summary: str, ok: str, *errors: int) -> dict[str, Any]:
    from connectsw.web import openapi

    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["meta"],
            "security": openapi.PUBLIC,
            "responses": {
                "200": {
                    "description": ok,
                    "content": {
                        "application/json": {"schema": openapi.Schema(Health, "serialization")}
                    },
                },
                **openapi.errors(*errors),
            },
        }
    }


def _openapi_paths() -> dict[str, Any]:
    from prometheus_client import CONTENT_TYPE_LATEST

    from connectsw.web import openapi

    metrics = _probe("metrics", "Prometheus metrics.", "The metrics, Prometheus text format.")
    metrics["get"]["responses"]["200"]["content"] = {
        CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}
    }
    metrics["get"]["responses"].update(openapi.errors(500))
    return {
        "/healthz": _probe("healthz", "The process answers.", "Alive.", 500),
        "/readyz": _probe("readyz", "The store answers a read.", "Ready.", 500, 503),
        "/metrics": metrics,
    }
