"""One JSON error shape for every 4xx/5xx: ``{"error": {"code": ..., "message": ...}}``.

``code`` is stable (clients branch on it); ``message`` is for people and never
holds a key, a token or a traceback. The HTTP status of each refusal is here,
in one table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from connectsw.core.errors import ConnectSWError, InvalidState, NotFound, is_utf8
from connectsw.licensing.errors import LicenseRefused

log = logging.getLogger("connectsw.web")

#: HTTP status per stable code (reference §3.1's reasons and the session codes).
STATUS: dict[str, int] = {
    "missing_credentials": 401,
    "invalid_format": 401,
    "not_found": 401,  # an unknown key: authentication failed, not a missing resource
    "invalid_session": 401,
    "session_expired": 401,
    "session_ended": 401,
    "expired": 403,
    "suspended": 403,
    "revoked": 403,
    "too_many_sessions": 403,
    "feature_not_included": 403,
    "rate_limited": 429,
    "no_such_resource": 404,
    "method_not_allowed": 405,
    "bad_request": 400,
    "bundle_too_large": 413,
    "cancelled": 409,
    "admin_required": 401,
    "invalid_json": 400,
    "invalid_request": 400,
    "payload_too_large": 413,
    "invalid_state": 409,  # e.g. reinstating a revoked license, a decision out of turn
    "conflict": 409,
    # The analysts' SQL (licensing/analytics/readonly.py) and imports (web/admin_analytics.py):
    "query_refused": 400,
    "query_error": 400,
    # Past analytics.sql_timeout: a property of the query under the server's limits, so a
    # 4xx (retrying the same query fails again; 5xx would invite that), and 422 rather than
    # 400 (the request was well-formed and allowed) or 408 (the client was not slow).
    "query_timeout": 422,
    "invalid_import": 400,
    "smtp_unavailable": 503,  # the server's [smtp] settings cannot be used (password file)
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` and a ``message`` for people."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx response."""

    error: ErrorDetail


def error_response(
    code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump(mode="json"),
        status=status or STATUS.get(code, 400),
        headers={**(headers or {}), "X-Error-Code": code},
    )


def bad_text(data: Any) -> str | None:
    """What makes decoded JSON unstorable, naming the first field (``args.0:``), or None:
    a NUL character (PostgreSQL text cannot hold one) or a lone surrogate (a JSON
    ``\\udcff`` escape: not Unicode text, no record holding it can be written)."""
    where = nul_path(data)
    if where:
        return f"{where}: a NUL character is not allowed"
    where = nul_path(data, test=lambda s: not is_utf8(s))
    if where:
        return f"{where}: a lone surrogate (\\uD800-\\uDFFF) is not allowed"
    return None


def nul_path(data: Any, path: str = "", test: Callable[[str], bool] | None = None) -> str | None:
    """Where a NUL character (or a string ``test`` is true of) is in decoded JSON
    (``args.0``, ``email``...), if anywhere.

    No store keeps one (PostgreSQL text cannot hold it): such a body is refused as
    a bad request naming the field, before anything is written."""
    test = test or (lambda s: "\x00" in s)
    if isinstance(data, str):
        return path or "body" if test(data) else None
    items = (
        data.items()
        if isinstance(data, dict)
        else enumerate(data)
        if isinstance(data, list)
        else ()
    )
    for key, value in items:
        if isinstance(key, str) and test(key):
            return path or "body"
        found = nul_path(value, f"{path}.{key}" if path else str(key), test)
        if found:
            return found
    return None


class ApiError(Exception):
    """Raised by handlers for a refusal with a stable code (and response headers)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.headers = headers or {}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as the JSON shape; an unexpected one as 500 ``internal`` (logged)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.code, exc.message, exc.status, exc.headers)
    except LicenseRefused as exc:
        return error_response(exc.reason, str(exc))
    except NotFound as exc:
        return error_response("no_such_resource", str(exc), 404)
    except InvalidState as exc:  # not now: at another checkpoint, already decided, finished
        return error_response(exc.code, str(exc), 409)
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, ...
        if exc.status < 400:
            raise
        code = {404: "no_such_resource", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "bad_request"
        )
        return error_response(code, exc.reason, exc.status)
    except ConnectSWError as exc:  # the service's refusals: its code, 400 unless the table says
        return error_response(exc.code, str(exc), STATUS.get(exc.code, 400))
    except ConnectionResetError:  # the client went away (Ctrl-C during watch): not a fault
        log.info("client went away during %s %s", request.method, request.path)
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response("internal", "internal error", 500)
