"""``/v1/sessions``: a license key exchanged for a session token; heartbeat; logout.

Headers (reference "API Specifications"): ``X-License-Key`` to open a session;
the token as ``X-Session-Token`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from connectsw.core.models import ApiModel
from connectsw.core.stores.sessions import SecurityEvent, SessionRecord
from connectsw.licensing.models import License
from connectsw.web import openapi
from connectsw.web.clientip import client_ip
from connectsw.web.errors import ApiError
from connectsw.web.ratelimit import remember

LICENSE = web.RequestKey("connectsw.license", License)
"""Request key: the :class:`License` authentication found (for usage and audit records)."""
SESSION = web.RequestKey("connectsw.session", SessionRecord)
"""Request key: the request's session (:class:`SessionRecord`), opened or presented."""


class SessionView(ApiModel):
    """A session: ``POST /v1/sessions/{id}/heartbeat``'s body."""

    session_id: str
    license_id: str
    expires_at: datetime


class OpenedSession(SessionView):
    """``POST /v1/sessions``'s body: the session, its token (shown once) and the count
    of the license's active sessions (``flagged``: admitted within the grace)."""

    token: str
    active_sessions: int
    allowed_sessions: int
    flagged: bool


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/sessions", open_session)
    app.router.add_post("/v1/sessions/{id}/heartbeat", heartbeat)
    app.router.add_delete("/v1/sessions/{id}", logout)
    openapi.add_paths(app, OPENAPI_PATHS)


def license_key(request: web.Request) -> str:
    key = request.headers.get("X-License-Key")
    if not key:
        raise ApiError("missing_credentials", "send the license key in X-License-Key")
    return key


def session_token(request: web.Request) -> str:
    token = request.headers.get("X-Session-Token")
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if not token:
        raise ApiError(
            "missing_credentials", "send the session token in X-Session-Token or Authorization"
        )
    return token


def _view(session: SessionRecord) -> SessionView:
    return SessionView(
        session_id=session.id, license_id=session.license_id, expires_at=session.expires_at
    )


async def authenticate(request: web.Request) -> License:
    """Reference §3.1 steps 1-5 for the request's key: format, lookup, expiry,
    suspension (web/keys.py), then the license's rate limit."""
    from connectsw.web.app import KEYS, LIMITS, RECENT_IPS

    license = await request.app[KEYS].validate(license_key(request))
    request[LICENSE] = license
    remember(request, await request.app[LIMITS].hit_license(license))
    over = request.app[RECENT_IPS].observe(license, client_ip(request))
    if over is not None:  # step 6 flags, never blocks
        await flag(
            request,
            license,
            "multi_ip",
            {"ips": over[0], "threshold": over[1], "ip": client_ip(request)},
        )
    return license


async def authenticate_session(request: web.Request) -> tuple[License, SessionRecord]:
    """The key's checks (:func:`authenticate`), then step 7, session activity: the
    token must name a live session of that same license (else 401 ``invalid_session``,
    ``session_expired`` or ``session_ended``)."""
    from connectsw.web.app import SESSION_CACHE

    license = await authenticate(request)
    session = await request.app[SESSION_CACHE].resolve(session_token(request))
    if session.license_id != license.id:
        raise ApiError("invalid_session", "the session token is not this license's", 401)
    request[SESSION] = session
    return license, session


async def flag(request: web.Request, license: License, kind: str, data: dict[str, Any]) -> None:
    """Record a security event for the license (the request goes on)."""
    from connectsw.web.app import METRICS, STORE

    request.app[METRICS].suspicious.labels(kind).inc()
    event = SecurityEvent(datetime.now(UTC), license.id, kind, data)
    await asyncio.get_running_loop().run_in_executor(
        None, request.app[STORE].add_security_event, event
    )


async def open_session(request: web.Request) -> web.Response:
    from connectsw.web.app import SESSIONS

    license = await authenticate(request)
    if "server" not in license.entitlements.features:  # e.g. FREE: local mode only
        raise ApiError(
            "feature_not_included",
            f"the {license.tier.value} tier does not include the server; upgrade to use it",
            403,
        )
    opened = await asyncio.get_running_loop().run_in_executor(
        None,
        request.app[SESSIONS].open,
        license,
        client_ip(request),
        request.headers.get("User-Agent", ""),
    )
    request[SESSION] = opened.session
    if opened.flagged:  # within the grace: admitted, and recorded
        await flag(
            request,
            license,
            "concurrent_sessions",
            {"active": opened.active, "allowed": opened.allowed, "session": opened.session.id},
        )
    body = OpenedSession(
        **_view(opened.session).model_dump(),
        token=opened.token,
        active_sessions=opened.active,
        allowed_sessions=opened.allowed,
        flagged=opened.flagged,
    )
    return web.json_response(body.to_api(), status=201)


async def _own(request: web.Request, action: str) -> SessionRecord:
    """Heartbeat or end the session named in the path, if the token is that session's."""
    from connectsw.web.app import SESSION_CACHE, SESSIONS

    sessions = request.app[SESSIONS]
    token = session_token(request)

    def act() -> SessionRecord:  # one look-up of the token, in one worker thread
        session = sessions.resolve(token)
        request[SESSION] = session
        if session.id != request.match_info["id"]:
            # Someone else's (or no such) session: indistinguishable from a missing one.
            raise ApiError("no_such_resource", "no such session", 404)
        call = sessions.heartbeat if action == "heartbeat" else sessions.end
        return call(token, record=session)

    record = await asyncio.get_running_loop().run_in_executor(None, act)
    request.app[SESSION_CACHE].forget(token)  # a heartbeat or a logout is seen at once here
    return record


async def heartbeat(request: web.Request) -> web.Response:
    return web.json_response(_view(await _own(request, "heartbeat")).to_api())


async def logout(request: web.Request) -> web.Response:
    await _own(request, "end")
    return web.Response(status=204)


_SESSION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The session's id (``sessionId``); only its own token may name it.",
    "schema": {"type": "string"},
}

OPENAPI_PATHS: openapi.Paths = {
    "/v1/sessions": {
        "post": {
            "operationId": "openSession",
            "summary": "Exchange a license key for a session token.",
            "tags": ["sessions"],
            "security": openapi.KEY_ONLY,
            "responses": {
                "201": openapi.json_response(OpenedSession, "The session and its token."),
                **openapi.errors(400, 401, 403, 429, 500),
            },
        }
    },
    "/v1/sessions/{id}/heartbeat": {
        "post": {
            "operationId": "heartbeatSession",
            "summary": "Keep the session alive.",
            "tags": ["sessions"],
            "security": openapi.SESSION_ONLY,
            "parameters": [_SESSION_ID],
            "responses": {
                "200": openapi.json_response(SessionView, "The session, still active."),
                **openapi.errors(401, 404, 429, 500),
            },
        }
    },
    "/v1/sessions/{id}": {
        "delete": {
            "operationId": "endSession",
            "summary": "End the session (log out).",
            "tags": ["sessions"],
            "security": openapi.SESSION_ONLY,
            "parameters": [_SESSION_ID],
            "responses": {
                "204": {"description": "Ended.", "headers": dict(openapi.RATELIMIT_HEADERS)},
                **openapi.errors(401, 404, 429, 500),
            },
        }
    },
}
