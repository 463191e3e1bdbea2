"""``/v1/admin/licenses``: the operator's license commands over HTTP, behind the admin token.

The same rules as ``connectsw license`` (cli/license.py), in the same place:
:class:`connectsw.licensing.service.Licenses`. Endpoints (JSON unless said):

- ``GET /v1/admin/licenses?limit=N`` (1-10000, default 100): ``{"licenses": [License]}``,
  most recently changed first;
- ``POST /v1/admin/licenses`` ``{"tier", "email", "users"?, "days"?}``: 201, the license
  with its ``"key"`` (shown this once, never stored) and a ``Location``;
- ``GET /v1/admin/licenses/{id}``: the license;
- ``POST /v1/admin/licenses/{id}/suspend`` ``{"reason"}``, ``.../reinstate`` ``{}``,
  ``.../revoke`` ``{"reason"?}``: the changed license (the license state table decides:
  409 ``invalid_state`` otherwise);
- ``GET /v1/admin/licenses/{id}/certificate``: the signed certificate, ``text/plain``
  (409 ``suspended``/``revoked`` for a license that is not active).

A License is ``License.model_dump(mode="json")`` (licensing/models.py); an unknown id is
404 ``no_such_resource``. The admin token (licensing/secrets.py) comes as
``Authorization: Bearer TOKEN`` or ``X-Admin-Token``, compared in constant time; anything
else is 401 ``admin_required``, one message whatever was wrong, checked before anything
else. Bodies: a JSON object of at most :data:`MAX_BODY` bytes with exactly the documented
fields and types (400 ``invalid_json``, 400 ``invalid_request``, 413
``payload_too_large``); an empty body is ``{}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial, wraps
from typing import Any, TypeVar

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectsw.core.errors import describe_validation_error
from connectsw.licensing.errors import LicenseRefused
from connectsw.licensing.models import License, LicenseStatus
from connectsw.licensing.secrets import admin_token, signing_key
from connectsw.licensing.service import Licenses
from connectsw.licensing.tiers import Tier
from connectsw.web import openapi
from connectsw.web.errors import ApiError, bad_text

ADMIN_TOKEN_DIGEST = web.AppKey("admin_token_digest", bytes)
SIGNING_KEY = web.AppKey("signing_key", Ed25519PrivateKey)

MAX_BODY = 65_536
"""Admin request bodies above 64 KiB are refused (413 ``payload_too_large``)."""
MAX_LIST = 10_000
"""At most this many licenses in one list (as ``connectsw license list --limit``)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = TypeVar("Body", bound=BaseModel)


def add_routes(app: web.Application) -> None:
    """The admin routes, and the admin secrets read at startup (refused there if missing)."""
    app.cleanup_ctx.append(_secrets)
    base = "/v1/admin/licenses"
    app.router.add_get(base, list_licenses)
    app.router.add_post(base, issue)
    app.router.add_get(base + "/{id}", show)
    app.router.add_post(base + "/{id}/suspend", suspend)
    app.router.add_post(base + "/{id}/reinstate", reinstate)
    app.router.add_post(base + "/{id}/revoke", revoke)
    app.router.add_get(base + "/{id}/certificate", certificate)
    openapi.add_paths(app, OPENAPI_PATHS)


async def _secrets(app: web.Application) -> AsyncIterator[None]:
    """Startup: the signing key and the admin token (ConfigError naming what to set)."""
    from connectsw.web.app import SETTINGS

    settings = app[SETTINGS]
    app[SIGNING_KEY] = signing_key(settings)
    app[ADMIN_TOKEN_DIGEST] = _digest(admin_token(settings))
    yield


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "backslashreplace")).digest()


def _presented(request: web.Request) -> str | None:
    if (token := request.headers.get("X-Admin-Token")) is not None:
        return token
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def require_admin(request: web.Request) -> None:
    """Raise 401 ``admin_required`` unless the request carries the admin token.

    Compared as SHA-256 digests with :func:`hmac.compare_digest`: constant time, and
    the token's length is not revealed either.
    """
    presented = _presented(request)
    expected = request.app[ADMIN_TOKEN_DIGEST]
    if not presented or not hmac.compare_digest(_digest(presented), expected):
        raise ApiError(
            "admin_required",
            "this endpoint needs the admin token (Authorization: Bearer or X-Admin-Token)",
            headers={"WWW-Authenticate": 'Bearer realm="connectsw-admin"'},
        )


def admin_only(handler: Handler) -> Handler:
    """The handler, run only for a request with the admin token (checked before anything)."""

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        require_admin(request)
        return await handler(request)

    return guarded


class StrictBody(BaseModel):
    """A request body: strict JSON types (``"5"`` is not a number, ``true`` not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class IssueBody(StrictBody):
    tier: Tier
    email: str
    users: int | None = None
    days: int | None = None

    @field_validator("tier", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SuspendBody(StrictBody):
    reason: str = Field(min_length=1)


class RevokeBody(StrictBody):
    reason: str | None = None


class EmptyBody(StrictBody):
    pass


def _too_large() -> ApiError:
    return ApiError("payload_too_large", f"the body is larger than {MAX_BODY} bytes")


async def json_body(request: web.Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``; raises ApiError (400/413) otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked, above the app's limit
        raise _too_large() from None
    if len(data) > MAX_BODY:
        raise _too_large()
    try:
        problem = bad_text(json.loads(data.strip() or b"{}"))
    except (ValueError, RecursionError):
        problem = None  # not JSON: said below
    if problem:
        raise ApiError("invalid_request", problem)
    try:
        return model.model_validate_json(data.strip() or b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError("invalid_json", "the body is not valid JSON (UTF-8)") from None
        raise ApiError("invalid_request", describe_validation_error(exc)) from None


def _view(record: License) -> dict[str, Any]:
    return record.model_dump(mode="json")


async def blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A store-touching call, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(function, *args, **kwargs))


def _licenses(request: web.Request) -> Licenses:
    from connectsw.web.app import LICENSES

    return request.app[LICENSES]


@admin_only
async def list_licenses(request: web.Request) -> web.Response:
    """``GET /v1/admin/licenses?limit=N``."""
    values = request.query.getall("limit", [])
    limit = 100
    if values:
        text = values[0]
        ok = len(values) == 1 and text.isascii() and text.isdigit() and len(text) <= 6
        limit = int(text) if ok else 0
        if not 1 <= limit <= MAX_LIST:
            raise ApiError("invalid_request", f"limit: a whole number from 1 to {MAX_LIST}")
    records = await blocking(_licenses(request).list, limit)
    return web.json_response({"licenses": [_view(r) for r in records]})


@admin_only
async def issue(request: web.Request) -> web.Response:
    """``POST /v1/admin/licenses``: 201 with the key, shown this once."""
    body = await json_body(request, IssueBody)
    record, key = await blocking(
        _licenses(request).issue, body.tier, body.email, users=body.users, days=body.days
    )
    return web.json_response(
        {**_view(record), "key": key},
        status=201,
        headers={"Location": f"/v1/admin/licenses/{record.id}"},
    )


@admin_only
async def show(request: web.Request) -> web.Response:
    """``GET /v1/admin/licenses/{id}``."""
    return web.json_response(
        _view(await blocking(_licenses(request).get, request.match_info["id"]))
    )


async def _change(request: web.Request, status: LicenseStatus, reason: str | None) -> web.Response:
    licenses = _licenses(request)
    record = await blocking(licenses.change, request.match_info["id"], status, reason)
    return web.json_response(_view(record))


@admin_only
async def suspend(request: web.Request) -> web.Response:
    """``POST /v1/admin/licenses/{id}/suspend`` ``{"reason": "..."}``."""
    body = await json_body(request, SuspendBody)
    return await _change(request, LicenseStatus.SUSPENDED, body.reason)


@admin_only
async def reinstate(request: web.Request) -> web.Response:
    """``POST /v1/admin/licenses/{id}/reinstate``."""
    await json_body(request, EmptyBody)
    return await _change(request, LicenseStatus.ACTIVE, None)


@admin_only
async def revoke(request: web.Request) -> web.Response:
    """``POST /v1/admin/licenses/{id}/revoke`` ``{"reason": "..."?}``."""
    body = await json_body(request, RevokeBody)
    return await _change(request, LicenseStatus.REVOKED, body.reason)


@admin_only
async def certificate(request: web.Request) -> web.Response:
    """``GET /v1/admin/licenses/{id}/certificate``: ``text/plain``, one line."""
    try:
        text = await blocking(
            _licenses(request).certificate, request.match_info["id"], request.app[SIGNING_KEY]
        )
    except LicenseRefused as exc:  # not active: a state of the license, not of the caller
        raise ApiError(exc.reason, str(exc), 409) from None
    return web.Response(text=text + "\n", content_type="text/plain")


class IssuedLicense(License):
    """``POST /v1/admin/licenses``: the license and its key, shown this once."""

    key: str


class LicenseList(BaseModel):
    """``GET /v1/admin/licenses``."""

    licenses: list[License]


ADMIN: openapi.Security = [{"adminToken": []}, {"bearer": []}]
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The license's public id (CSFW-TIER-RANDOM).",
    "schema": {"type": "string"},
}
_ERRORS = (400, 401, 404, 409, 413, 429, 500)


def _operation(
    operation_id: str, summary: str, ok: dict[str, Any], *, body: type[BaseModel] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": ADMIN,
        "responses": {**ok, **openapi.errors(*_ERRORS)},
    }
    if body is not None:
        op["requestBody"] = openapi.body(body)
    return op


_ONE = {"200": openapi.json_response(License, "The license.")}
OPENAPI_PATHS: openapi.Paths = {
    "/v1/admin/licenses": {
        "get": {
            **_operation(
                "listLicenses",
                "Licenses, newest first.",
                {"200": openapi.json_response(LicenseList, "The licenses.")},
            ),
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST},
                }
            ],
        },
        "post": _operation(
            "issueLicense",
            "Issue a license; its key is in this answer only.",
            {"201": openapi.json_response(IssuedLicense, "The license and its key.")},
            body=IssueBody,
        ),
    },
    "/v1/admin/licenses/{id}": {
        "get": {**_operation("showLicense", "One license.", _ONE), "parameters": [_ID]}
    },
    "/v1/admin/licenses/{id}/suspend": {
        "post": {
            **_operation("suspendLicense", "Suspend (reversible).", _ONE, body=SuspendBody),
            "parameters": [_ID],
        }
    },
    "/v1/admin/licenses/{id}/reinstate": {
        "post": {
            **_operation(
                "reinstateLicense", "Reinstate a suspended license.", _ONE, body=EmptyBody
            ),
            "parameters": [_ID],
        }
    },
    "/v1/admin/licenses/{id}/revoke": {
        "post": {
            **_operation("revokeLicense", "Revoke (final).", _ONE, body=RevokeBody),
            "parameters": [_ID],
        }
    },
    "/v1/admin/licenses/{id}/certificate": {
        "get": {
            **_operation(
                "licenseCertificate",
                "A signed certificate, verifiable offline.",
                {
                    "200": {
                        "description": "csfw-cert-v1.PAYLOAD.SIGNATURE, one line.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "parameters": [_ID],
        }
    },
}
