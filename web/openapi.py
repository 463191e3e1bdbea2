"""``GET /v1/openapi.json``: the OpenAPI 3.1 document of the routes this app serves.

Every route module describes its own paths next to its handlers (an
``OPENAPI_PATHS`` dict, in OpenAPI's ``paths`` shape) and registers them with
:func:`add_paths` where it adds its routes, so the document holds exactly the
mounted modules' operations (``tests/web/test_openapi.py`` compares it with the
app's router). Request and response bodies are the pydantic models the handlers
really validate with and answer with, written as :func:`body` / :func:`json_response`
markers; :func:`build` turns them into ``components/schemas`` through
``pydantic.json_schema.models_json_schema`` (validation schemas for what is read,
serialization schemas for what is written), so the document cannot drift from
the code.

Shared pieces: the error shape of ``web/errors.py`` (:func:`errors`), the
security schemes (``licenseKey``, ``sessionToken``, ``bearer``) and the
requirements of each kind of route (:data:`KEY_ONLY`, :data:`SESSION_ONLY`,
:data:`KEY_AND_SESSION`, :data:`PUBLIC`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from connectsw.web.errors import ErrorResponse

Paths = dict[str, dict[str, Any]]

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
PATHS = web.AppKey("openapi_paths", list)


@dataclass(frozen=True)
class Schema:
    """A marker for a model's schema, replaced by a ``$ref`` when the document is built."""

    model: type[BaseModel]
    mode: JsonSchemaMode


def body(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    """A required JSON ``requestBody`` validated as ``model``."""
    return {
        "required": True,
        "description": description or model.__doc__ or "",
        "content": {"application/json": {"schema": Schema(model, "validation")}},
    }


def json_response(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A response whose JSON body is ``model`` as the handler writes it."""
    return {
        "description": description,
        "headers": dict(RATELIMIT_HEADERS),
        "content": {"application/json": {"schema": Schema(model, "serialization")}},
    }


def _header(description: str, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


#: Sent on ``/v1`` responses that are not streamed (per-IP and per-license quota).
RATELIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Limit": _header("Requests allowed in the window of the tightest limit."),
    "RateLimit-Remaining": _header("Requests left in that window."),
    "RateLimit-Reset": _header("Seconds until the window frees a request."),
}

#: What each status of the error shape means (web/errors.py's table, grouped).
ERROR_STATUSES: dict[int, str] = {
    400: "Bad request: malformed JSON, a wrong type, an unknown field, a bad parameter.",
    401: "Authentication failed: missing or malformed credentials, unknown key, bad session.",
    403: "The license is expired, suspended or revoked, or has too many sessions.",
    404: "No such resource (another license's resources are answered 404 too).",
    409: "Not now: the execution is in another state.",
    413: "The body is over the size limit.",
    422: "Allowed and well-formed, but could not be done within the server's limits (time).",
    429: "Rate limited: see Retry-After.",
    500: "Unexpected server error (a bug; logged on the server).",
    503: "Not ready: the store does not answer, or a service the request needs (SMTP).",
}


def errors(*statuses: int) -> dict[str, Any]:
    """Responses in the one error shape for ``statuses``."""
    out: dict[str, Any] = {}
    for status in statuses:
        headers = {
            **RATELIMIT_HEADERS,
            "X-Error-Code": _header("The stable error code (as in the body).", required=True),
        }
        if status == 429:
            headers["Retry-After"] = _header("Seconds to wait before retrying.", required=True)
        out[str(status)] = {
            "description": ERROR_STATUSES[status],
            "headers": headers,
            "content": {"application/json": {"schema": Schema(ErrorResponse, "serialization")}},
        }
    return out


SECURITY_SCHEMES: dict[str, Any] = {
    "licenseKey": {"type": "apiKey", "in": "header", "name": "X-License-Key"},
    "sessionToken": {"type": "apiKey", "in": "header", "name": "X-Session-Token"},
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The session token, as an alternative to X-Session-Token"
        " (or, on /v1/admin, the admin token, as an alternative to X-Admin-Token).",
    },
    "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
}
Security = list[dict[str, list[str]]]
PUBLIC: Security = []
KEY_ONLY: Security = [{"licenseKey": []}]
SESSION_ONLY: Security = [{"sessionToken": []}, {"bearer": []}]
KEY_AND_SESSION: Security = [
    {"licenseKey": [], "sessionToken": []},
    {"licenseKey": [], "bearer": []},
]


def add_paths(app: web.Application, paths: Paths) -> None:
    """Document ``paths`` (a route module's ``OPENAPI_PATHS``) in this app's document."""
    app.setdefault(PATHS, []).append(paths)


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s registered paths, schemas resolved."""
    paths: Paths = {}
    for part in app.get(PATHS, []):
        for path, operations in part.items():
            clash = set(paths.get(path, {})) & set(operations)
            if clash:
                raise ValueError(f"{path} {sorted(clash)} is documented twice")
            paths.setdefault(path, {}).update(operations)
    markers: dict[Schema, None] = {}
    _collect(paths, markers)
    keys, definitions = models_json_schema(
        [(m.model, m.mode) for m in markers], by_alias=True, ref_template=REF_TEMPLATE
    )
    refs = {m: keys[(m.model, m.mode)] for m in markers}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ConnectSW API",
            "version": "1",
            "description": (
                "The v1 API of `connectsw serve`. Every error is "
                '`{"error": {"code": ..., "message": ...}}` with the code also in '
                "`X-Error-Code`."
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": _resolve(dict(sorted(paths.items())), refs),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _collect(node: Any, found: dict[Schema, None]) -> None:
    if isinstance(node, Schema):
        found[node] = None
    elif isinstance(node, dict):
        for value in node.values():
            _collect(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, found)


def _resolve(node: Any, refs: dict[Schema, Any]) -> Any:
    if isinstance(node, Schema):
        return refs[node]
    if isinstance(node, dict):
        return {k: _resolve(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, refs) for v in node]
    return node


#: The built document, kept after the first request (every module is mounted by then).
DOCUMENT = web.AppKey("openapi_document", dict)


async def openapi_json(request: web.Request) -> web.Response:
    cache = request.app[DOCUMENT]
    if not cache:
        cache.update(build(request.app))
    return web.json_response(cache)


OPENAPI_PATHS: Paths = {
    "/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "tags": ["meta"],
            "security": PUBLIC,
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "headers": dict(RATELIMIT_HEADERS),
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **errors(429, 500),
            },
        }
    }
}


def add_routes(app: web.Application) -> None:
    app[DOCUMENT] = {}
    app.router.add_get("/v1/openapi.json", openapi_json)
    add_paths(app, OPENAPI_PATHS)
