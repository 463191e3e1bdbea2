"""``/v1/admin/analytics/...`` and ``/v1/admin/outbox``: the analysts' and the operator's
analytics commands over HTTP (issue 7), behind the admin token of ``/v1/admin/licenses``.

The same operations as the CLI, in the same place (licensing/analytics/service.py,
licensing/mail.py), with the same JSON:

- ``GET /v1/admin/analytics/views``: the documented views and their columns
  (``connectsw analytics views --json``);
- ``POST /v1/admin/analytics/sql`` ``{"sql", "format"?: json|csv|parquet, "max_rows"?}``:
  the last statement's rows through the read-only guard of ``analytics sql``
  (licensing/analytics/readonly.py), as the body in that format (``X-Row-Count``, and
  ``X-Rows-Truncated: true`` when there were more than ``max_rows``, default and at most
  ``analytics.sql_max_rows``). Refused: 400 ``query_refused``; DuckDB's error: 400
  ``query_error``; past ``analytics.sql_timeout``: 422 ``query_timeout`` (see
  web/errors.py);
- ``GET /v1/admin/analytics/report?since=7d&license=ID``: ``analytics report --json``;
- ``POST /v1/admin/analytics/scan`` ``{"since"?, "apply"?, "license"?}``: ``antipiracy scan
  [--apply] --json`` (a finding is acted on once, whoever scans);
- ``POST /v1/admin/analytics/import`` (body: a CSV or Parquet file of events) and
  ``POST /v1/admin/analytics/licenses`` (of licenses): ``analytics import [--licenses]
  --json``; at most ``server.max_import_bytes`` (413 ``payload_too_large``); invalid rows
  and unreadable files: 400 ``invalid_import`` with the CLI's line (the file is ``body``);
- ``GET /v1/admin/outbox?status=all|unsent&limit=N``, ``GET /v1/admin/outbox/{id}``,
  ``POST /v1/admin/outbox/send`` ``{"limit"?}``: ``outbox list|show|send --json``
  (one send at a time per server).

The work (DuckDB, files, the store, SMTP) runs in the default executor's threads, never on
the event loop. Each request is a usage event and an audit record like every other
(web/usage.py's middleware).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from connectsw.core.errors import ConfigError, NotFound
from connectsw.licensing.analytics.ingest import InvalidImport
from connectsw.web import openapi
from connectsw.web.admin import ADMIN, StrictBody, admin_only, blocking, json_body
from connectsw.web.errors import ApiError

OUTBOX_SENDING = web.AppKey("outbox_sending", asyncio.Lock)
CHUNK = 1 << 16
MAX_OUTBOX_LIST = 10_000
"""At most this many messages in one list (as ``connectsw outbox list --limit``)."""
MAX_SEND = 100_000
"""At most this many messages in one send (as ``connectsw outbox send --limit``)."""


def add_routes(app: web.Application) -> None:
    """The routes (the admin token is web/admin.py's, read at its startup)."""
    app[OUTBOX_SENDING] = asyncio.Lock()
    base = "/v1/admin/analytics"
    app.router.add_get(base + "/views", views)
    app.router.add_post(base + "/sql", sql)
    app.router.add_get(base + "/report", report)
    app.router.add_post(base + "/scan", scan)
    app.router.add_post(base + "/import", import_events)
    app.router.add_post(base + "/licenses", import_licenses)
    app.router.add_get("/v1/admin/outbox", outbox_list)
    app.router.add_post("/v1/admin/outbox/send", outbox_send)
    app.router.add_get("/v1/admin/outbox/{id}", outbox_show)
    openapi.add_paths(app, OPENAPI_PATHS)


def _settings(request: web.Request) -> Any:
    from connectsw.web.app import SETTINGS

    return request.app[SETTINGS]


def _store(request: web.Request) -> Any:
    from connectsw.web.app import STORE

    return request.app[STORE]


def _param(request: web.Request, name: str, default: str | None = None) -> str | None:
    """A query parameter given at most once (400 ``invalid_request`` otherwise)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError("invalid_request", f"{name}: give it once")
    if values and "\x00" in values[0]:
        raise ApiError("invalid_request", f"{name}: a NUL character is not allowed")
    return values[0] if values else default


def _whole(request: web.Request, name: str, default: int, high: int) -> int:
    text = _param(request, name)
    if text is None:
        return default
    ok = text.isascii() and text.isdigit() and len(text) <= len(str(high))
    value = int(text) if ok else 0
    if not 1 <= value <= high:
        raise ApiError("invalid_request", f"{name}: a whole number from 1 to {high}")
    return value


def _since(text: str) -> str:
    """``text`` if :func:`parse_since` reads it (the CLI's rule), else 400."""
    from connectsw.licensing.analytics.report import parse_since

    try:
        parse_since(text)
    except (ConfigError, ValueError, OverflowError):
        raise ApiError(
            "invalid_request",
            "since: expected a duration such as 7d, 12h, 30m or 2w, or an ISO date",
        ) from None
    return text


# -- views and SQL ----------------------------------------------------------------------


class ViewColumn(BaseModel):
    name: str
    type: str
    meaning: str


class ViewInfo(BaseModel):
    """A documented view: its name, what a row is, its columns."""

    name: str
    meaning: str
    columns: list[ViewColumn]


class ViewList(RootModel[list[ViewInfo]]):
    """``GET /v1/admin/analytics/views``: as ``connectsw analytics views --json``."""


@admin_only
async def views(request: web.Request) -> web.Response:
    """``GET /v1/admin/analytics/views``."""
    from connectsw.licensing.analytics.service import views_json

    return web.json_response(views_json())


class SqlBody(StrictBody):
    """Read-only SQL over the views; the last statement's rows are answered."""

    sql: str = Field(min_length=1)
    format: Literal["json", "csv", "parquet"] = "json"
    max_rows: int | None = Field(None, ge=1)


@admin_only
async def sql(request: web.Request) -> web.Response:
    """``POST /v1/admin/analytics/sql``."""
    from connectsw.licensing.analytics.service import CONTENT_TYPES, encode, query

    body = await json_body(request, SqlBody)
    settings = _settings(request)
    cap = settings.analytics.sql_max_rows
    if body.max_rows is not None and body.max_rows > cap:
        raise ApiError("invalid_request", f"max_rows: at most {cap} (analytics.sql_max_rows)")
    result = await blocking(query, settings, body.sql, body.max_rows or cap)
    data = await blocking(encode, result.table, body.format)
    headers = {
        "X-Row-Count": str(result.table.num_rows),
        "X-Rows-Truncated": "true" if result.truncated else "false",
    }
    kind = CONTENT_TYPES[body.format]
    charset = None if body.format == "parquet" else "utf-8"
    return web.Response(body=data, content_type=kind, charset=charset, headers=headers)


# -- report and scan --------------------------------------------------------------------


class Finding(BaseModel):
    """One detector's flag for one window, with its evidence (licensing/analytics/detectors.py)."""

    license_id: str
    detector: str
    severity: str
    confidence: float
    window_start: str
    window_end: str
    evidence: dict[str, Any]


class LicenseVerdict(BaseModel):
    """A license's suspicion score, flags, findings and recommended response tier."""

    license_id: str
    score: float
    recommendation: str
    tier: int
    escalate: bool
    flags: list[str]
    findings: list[Finding]


class ScanAction(BaseModel):
    """A response tier taken (``done``) or not (``already_done``, ``skipped``)."""

    model_config = ConfigDict(populate_by_name=True)

    licenseId: str  # noqa: N815 - the CLI's JSON key
    tier: int
    detectionType: str  # noqa: N815
    status: str
    detail: str
    escalated: bool


class ScanReport(BaseModel):
    """``analytics report --json`` / ``antipiracy scan --json`` (``actions`` with apply)."""

    since: str
    until: str
    licenses: list[LicenseVerdict]
    actions: list[ScanAction] | None = None


class ScanBody(StrictBody):
    """Run the detectors; with ``apply``, take the response tiers (reference §3.3)."""

    since: str = Field("7d", min_length=1, max_length=64)
    apply: bool = False
    license: str | None = Field(None, min_length=1, max_length=256)


async def _scan(
    request: web.Request, since: str, license_id: str | None, apply: bool
) -> web.Response:
    from connectsw.licensing.analytics.service import scan as run

    settings, store = _settings(request), _store(request)
    result = await blocking(
        run, settings, store if apply else None, _since(since), license_id, apply=apply
    )
    return web.json_response(result.to_json())


@admin_only
async def report(request: web.Request) -> web.Response:
    """``GET /v1/admin/analytics/report?since=7d&license=ID``."""
    since = _param(request, "since", "7d") or "7d"
    return await _scan(request, since, _param(request, "license"), False)


@admin_only
async def scan(request: web.Request) -> web.Response:
    """``POST /v1/admin/analytics/scan``."""
    body = await json_body(request, ScanBody)
    return await _scan(request, body.since, body.license, body.apply)


# -- imports ----------------------------------------------------------------------------


class ImportedLicenses(BaseModel):
    rows: int
    licenses: int


class ImportedEvents(BaseModel):
    rows: int
    imported: int
    duplicates: int
    geo_filled: int
    dates: list[str]
    files_written: int
    files_compacted: int


class ImportReport(BaseModel):
    """``analytics import [--licenses] --json``: what was imported."""

    licenses: ImportedLicenses | None = None
    events: ImportedEvents | None = None


async def _upload(request: web.Request, folder: Path) -> Path:
    """The body, streamed to ``folder/body`` (413 above ``server.max_import_bytes``)."""
    limit = _settings(request).server.max_import_bytes
    too_large = ApiError("payload_too_large", f"the file is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    path, size = folder / "body", 0
    with open(path, "wb") as fh:
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large
            fh.write(chunk)
    if size == 0:
        raise InvalidImport("the body is empty: send a CSV or Parquet file")
    return path


async def _import(request: web.Request, licenses: bool) -> web.Response:
    from connectsw.licensing.analytics.service import import_files

    folder = Path(tempfile.mkdtemp(prefix="connectsw-import-"))
    try:
        path = await _upload(request, folder)
        settings = _settings(request)
        try:
            if licenses:
                result = await blocking(import_files, settings, licenses=path)
            else:
                result = await blocking(import_files, settings, [path])
        except InvalidImport as exc:  # the temporary file is the request's body
            raise InvalidImport(str(exc).replace(str(path), "body")) from None
    finally:
        await blocking(shutil.rmtree, folder, ignore_errors=True)
    return web.json_response(result)


@admin_only
async def import_events(request: web.Request) -> web.Response:
    """``POST /v1/admin/analytics/import``: a CSV or Parquet file of usage events."""
    return await _import(request, licenses=False)


@admin_only
async def import_licenses(request: web.Request) -> web.Response:
    """``POST /v1/admin/analytics/licenses``: a CSV or Parquet file of licenses."""
    return await _import(request, licenses=True)


# -- outbox -----------------------------------------------------------------------------


class OutboxEntry(BaseModel):
    """A queued e-mail (``sent_at`` null until the SMTP server accepted it)."""

    id: int
    created_at: str
    license_id: str
    to: str
    subject: str
    body: str
    sent_at: str | None
    attempts: int
    last_error: str | None


class OutboxList(RootModel[list[OutboxEntry]]):
    """``GET /v1/admin/outbox``: oldest first, as ``connectsw outbox list --json``."""


class SendBody(StrictBody):
    """Deliver at most ``limit`` unsent messages, oldest first."""

    limit: int = Field(1000, ge=1, le=MAX_SEND)


class DeliveryEntry(BaseModel):
    id: int
    to: str
    error: str | None


class SendReport(BaseModel):
    """``connectsw outbox send --json``: one entry per message tried (``error`` null if sent)."""

    sent: int
    failed: int
    deliveries: list[DeliveryEntry]


@admin_only
async def outbox_list(request: web.Request) -> web.Response:
    """``GET /v1/admin/outbox?status=all|unsent&limit=N``."""
    from connectsw.licensing.mail import message_json

    status = _param(request, "status", "all")
    if status not in ("all", "unsent"):
        raise ApiError("invalid_request", "status: all or unsent")
    limit = _whole(request, "limit", 100, MAX_OUTBOX_LIST)
    store = _store(request)
    messages = await blocking(store.outbox_messages, unsent=status == "unsent", limit=limit)
    return web.json_response([message_json(m) for m in messages])


@admin_only
async def outbox_show(request: web.Request) -> web.Response:
    """``GET /v1/admin/outbox/{id}``."""
    from connectsw.licensing.mail import message_json

    text = request.match_info["id"]
    found = None
    if text.isascii() and text.isdigit() and len(text) <= 18:
        found = await blocking(_store(request).outbox_message, int(text))
    if found is None:
        raise NotFound(f"no outbox message {text[:40]}")
    return web.json_response(message_json(found))


@admin_only
async def outbox_send(request: web.Request) -> web.Response:
    """``POST /v1/admin/outbox/send`` ``{"limit"?}``."""
    from connectsw.licensing.mail import deliveries_json, send_unsent

    body = await json_body(request, SendBody)
    conf = _settings(request).smtp
    async with request.app[OUTBOX_SENDING]:
        try:
            results = await blocking(send_unsent, _store(request), conf, limit=body.limit)
        except ConfigError as exc:  # the server's SMTP settings, not the request
            raise ApiError("smtp_unavailable", str(exc), 503) from None
    return web.json_response(deliveries_json(results))


# -- OpenAPI ----------------------------------------------------------------------------


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    body: type[BaseModel] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["admin"],
        "security": ADMIN,
        "responses": {**ok, **openapi.errors(*errors, 401, 429, 500)},
        **extra,
    }
    if body is not None:
        op["requestBody"] = openapi.body(body)
    return op


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _rows_header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


_SQL_OK = {
    "description": "The last statement's rows in the asked format.",
    "headers": {
        **openapi.RATELIMIT_HEADERS,
        "X-Row-Count": _rows_header("Rows in this answer."),
        "X-Rows-Truncated": _rows_header("true if the query had more than max_rows rows."),
    },
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": {"type": "object"}},
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {
            "schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}
        },
    },
}
_FILE_BODY = {
    "required": True,
    "description": "A CSV (header line) or Parquet file; at most server.max_import_bytes.",
    "content": {
        media: {"schema": {"type": "string", "contentMediaType": media}}
        for media in ("text/csv", "application/vnd.apache.parquet", "application/octet-stream")
    },
}
_SCAN = openapi.json_response(ScanReport, "Per license: score, flags, evidence, tier.")
_IMPORTED = openapi.json_response(ImportReport, "What was imported.")
_SINCE = _query("since", "Window: 7d, 12h, 30m, 2w before now, or an ISO date.", {"type": "string"})

OPENAPI_PATHS: openapi.Paths = {
    "/v1/admin/analytics/views": {
        "get": _operation(
            "analyticsViews",
            "The documented views and their columns.",
            {"200": openapi.json_response(ViewList, "The views.")},
            (),
        )
    },
    "/v1/admin/analytics/sql": {
        "post": _operation(
            "analyticsSql",
            "Read-only SQL over the views (refused: 400 query_refused; timeout: 422).",
            {"200": _SQL_OK},
            (400, 413, 422),
            body=SqlBody,
        )
    },
    "/v1/admin/analytics/report": {
        "get": _operation(
            "analyticsReport",
            "Per license: suspicion score, flags, evidence, recommendation.",
            {"200": _SCAN},
            (400,),
            parameters=[_SINCE, _query("license", "Only this license.", {"type": "string"})],
        )
    },
    "/v1/admin/analytics/scan": {
        "post": _operation(
            "analyticsScan",
            "Run the detectors; with apply, take the response tiers (once per finding).",
            {"200": _SCAN},
            (400, 413),
            body=ScanBody,
        )
    },
    "/v1/admin/analytics/import": {
        "post": _operation(
            "analyticsImport",
            "Import usage events (validated, deduplicated; all rows or none).",
            {"200": _IMPORTED},
            (400, 413),
            requestBody=_FILE_BODY,
        )
    },
    "/v1/admin/analytics/licenses": {
        "post": _operation(
            "analyticsImportLicenses",
            "Import licenses kept elsewhere: license_id, tier, max_users, status.",
            {"200": _IMPORTED},
            (400, 413),
            requestBody=_FILE_BODY,
        )
    },
    "/v1/admin/outbox": {
        "get": _operation(
            "outboxList",
            "E-mails queued by the response tiers, oldest first.",
            {"200": openapi.json_response(OutboxList, "The messages.")},
            (400,),
            parameters=[
                _query("status", "all (default) or unsent.", {"enum": ["all", "unsent"]}),
                _query(
                    "limit",
                    "Messages listed (default 100).",
                    {"type": "integer", "minimum": 1, "maximum": MAX_OUTBOX_LIST},
                ),
            ],
        )
    },
    "/v1/admin/outbox/{id}": {
        "get": _operation(
            "outboxShow",
            "One queued e-mail.",
            {"200": openapi.json_response(OutboxEntry, "The message.")},
            (404,),
            parameters=[
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "The message's id.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
        )
    },
    "/v1/admin/outbox/send": {
        "post": _operation(
            "outboxSend",
            "Deliver the unsent e-mails over SMTP ([smtp] settings).",
            {"200": openapi.json_response(SendReport, "One entry per message tried.")},
            (400, 413, 503),
            body=SendBody,
        )
    },
}
