"""The v1 execution API (reference "API Specifications"), for one license's executions.

Every route needs ``X-License-Key`` and the session token (``X-Session-Token`` or
``Authorization: Bearer``) of a session of that license. Another license's
execution is answered 404, as a missing one (never 403: ids are not disclosed).

- ``POST /v1/execute``: ``Request`` JSON (command, args, context) plus an optional
  ``bundleId`` (``POST /v1/bundles``); plans it in a server-side workspace and
  starts it. 201 with ``{executionId, plan, status, nextCheckpoint}``.
- ``GET /v1/executions?limit=N``: the license's executions, newest first.
- ``GET /v1/execution/{id}``: the execution's view (status, checkpoint, tasks).
- ``POST /v1/execution/{id}/checkpoint``: ``{decision, feedback}``; the next stage
  starts at once after ``approve`` / ``request_changes``.
- ``POST /v1/execution/{id}/resume``: runs an interrupted or failed execution again.
- ``GET /v1/execution/{id}/events``: server-sent events, resumable with
  ``Last-Event-ID``; the stream ends when the execution stops (checkpoint, end).
- ``GET /v1/execution/{id}/artifacts/{path}``: a file of the workspace.
- ``GET /v1/execution/{id}/bundle``: the workspace's history as a git bundle.
- ``POST /v1/bundles``: upload a git bundle (``new feature`` / ``fix``), at most
  ``server.max_bundle_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import Field, ValidationError, model_validator

from connectsw.core.errors import NotFound
from connectsw.core.models import (
    MAX_USER_TEXT,
    ApiModel,
    Decision,
    Event,
    ExecuteResponse,
    Execution,
    ExecutionStatus,
    ExecutionView,
    Request,
)
from connectsw.core.states import FINISHED, RUNNABLE, STOPPED
from connectsw.licensing.models import License
from connectsw.web import openapi
from connectsw.web.errors import ApiError, bad_text
from connectsw.web.sessions import authenticate_session

T = TypeVar("T")


def server_commands() -> list[str]:
    """The commands ``POST /v1/execute`` takes: every registered workflow's (a plugin
    workflow's too, when the plugin is installed on the server), sorted.

    Not ``run`` (the task-graph workflow): a task-graph file names commands and
    paths, which the server never takes from a client (it would run them, and read
    its own files to plan them).
    """
    from connectsw.core.planner import TASK_GRAPH
    from connectsw.plugins.registry import get_registries, workflow_kind

    table = get_registries().workflow_commands()
    return sorted(c for c, wf in table.items() if workflow_kind(wf) != TASK_GRAPH)


#: Seconds between two looks at the store for new events of a followed execution.
EVENT_POLL_SECONDS = 0.3
#: Seconds of silence after which the event stream sends a keep-alive comment.
KEEPALIVE_SECONDS = 15.0


class ExecuteBody(Request):
    """``POST /v1/execute``: the reference's request, plus an uploaded bundle's id."""

    command: str = Field(
        max_length=200,
        description="A workflow's command words: new product, new feature, fix, or a plugin's",
    )
    bundle_id: str | None = None


class CheckpointBody(ApiModel):
    """``POST /v1/execution/{id}/checkpoint``."""

    decision: Literal["approve", "request_changes", "cancel"]
    feedback: str | None = Field(default=None, max_length=MAX_USER_TEXT)

    @model_validator(mode="after")
    def _changes_say_what(self) -> CheckpointBody:
        if self.decision == "request_changes" and not (self.feedback or "").strip():
            raise ValueError("request_changes needs feedback: what should change")
        return self


class ExecutionSummary(ApiModel):
    """One row of ``GET /v1/executions``."""

    execution_id: str
    status: ExecutionStatus
    command: str
    title: str
    plan: str
    stage: int
    stages: int
    next_checkpoint: str | None
    updated_at: datetime


class ExecutionList(ApiModel):
    """``GET /v1/executions``: the license's executions, newest first."""

    executions: list[ExecutionSummary]


class Decided(ApiModel):
    """``POST /v1/execution/{id}/checkpoint``: the execution after the decision."""

    execution_id: str
    status: ExecutionStatus
    next_checkpoint: str | None


class BundleUploaded(ApiModel):
    """``POST /v1/bundles``: the id to send as ``bundleId`` to ``POST /v1/execute``."""

    bundle_id: str
    bytes: int


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/execute", execute)
    app.router.add_get("/v1/executions", list_executions)
    app.router.add_get("/v1/execution/{id}", get_execution)
    app.router.add_post("/v1/execution/{id}/checkpoint", checkpoint)
    app.router.add_post("/v1/execution/{id}/resume", resume)
    app.router.add_get("/v1/execution/{id}/events", events)
    app.router.add_get("/v1/execution/{id}/artifacts/{path:.+}", artifact)
    app.router.add_get("/v1/execution/{id}/bundle", bundle)
    app.router.add_post("/v1/bundles", upload_bundle)
    openapi.add_paths(app, OPENAPI_PATHS)


async def _blocking(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(func, *args, **kwargs))


async def _indexed_read(store: Any, read: Any, *args: Any) -> Any:
    """One indexed read: on the event loop for the embedded SQLite store (about 20 µs,
    less than the hop to a thread and back), in a thread for a server (a round trip)."""
    from connectsw.core.stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return read(*args)
    return await _blocking(read, *args)


async def _body(request: web.Request, model: type[T]) -> T:
    """The JSON body as ``model``; 400 ``bad_request`` naming the first problem."""
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError("bad_request", "the body is not JSON") from None
    problem = bad_text(data)
    if problem:
        raise ApiError("bad_request", problem)
    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError("bad_request", f"{where}: {first['msg']}") from None


async def _own(request: web.Request, license: License) -> Execution:
    """The execution named in the path, if it is the license's (else 404)."""
    from connectsw.web.app import RUNS

    execution_id = request.match_info["id"]
    execution = await _blocking(request.app[RUNS].engine.store.get_execution, execution_id)
    if execution is None or execution.license_id != license.id:
        raise ApiError("no_such_resource", f"no execution {execution_id}", 404)
    return execution


def _view(request: web.Request, execution_id: str) -> dict[str, Any]:
    """``GET /v1/execution/{id}``'s body, artifacts with their API URLs."""
    from connectsw.web.app import RUNS

    view = request.app[RUNS].engine.view(execution_id).to_api()
    checkpoint = view.get("checkpoint")
    if checkpoint:
        for item in checkpoint["artifacts"]:
            item["url"] = f"/v1/execution/{execution_id}/artifacts/{item['path']}"
    server_side = view["workspace"]
    view["workspace"] = f"on the server (`connectsw pull {execution_id}` brings it here)"
    return scrub(view, server_side, request.app[RUNS].settings.data_dir)


def scrub(data: Any, workspace: str, data_dir: Path) -> Any:
    """``data`` (decoded JSON) without the server's paths: its workspace becomes ``.``,
    its interpreter ``python``, its data dir ``DATA_DIR`` (found by the new-user
    trial: gate details and messages showed them, a map of the server for clients)."""
    text = json.dumps(data)
    for path, shown in (
        (workspace, "."),
        (str(data_dir.expanduser()), "DATA_DIR"),
        (sys.executable, "python"),
        (sys.prefix, "PYTHON_PREFIX"),
    ):
        if path:
            text = text.replace(json.dumps(path)[1:-1], shown)
    return json.loads(text)


async def execute(request: web.Request) -> web.Response:
    from connectsw.web.app import METRICS, RUNS, UPLOADS

    license, _ = await authenticate_session(request)
    body = await _body(request, ExecuteBody)
    known = await _blocking(server_commands)
    if " ".join(body.command.lower().split()) not in known:
        raise ApiError("bad_request", f"command: expected one of {', '.join(known)}")
    bundle = None
    if body.bundle_id is not None:
        bundle = request.app[UPLOADS].path(license.id, body.bundle_id)
        if bundle is None:
            raise ApiError("no_such_resource", f"no bundle {body.bundle_id}", 404)
    req = Request(command=body.command, args=body.args, context=body.context)
    runs = request.app[RUNS]
    execution = await _blocking(runs.submit, req, license.id, bundle)
    runs.start(execution.id)
    request.app[METRICS].executions_started.inc()
    return web.json_response(runs.engine.execute_response(execution).to_api(), status=201)


async def list_executions(request: web.Request) -> web.Response:
    from connectsw.web.app import RUNS

    license, _ = await authenticate_session(request)
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise ApiError("bad_request", "limit: expected a whole number") from None
    if not 1 <= limit <= 1000:
        raise ApiError("bad_request", "limit: expected 1 to 1000")
    engine = request.app[RUNS].engine
    found = await _blocking(engine.store.list_executions, limit, license_id=license.id)
    rows = [
        ExecutionSummary(
            execution_id=e.id,
            status=engine.status(e),
            command=e.request.command,
            title=e.request.text,
            plan=e.plan.name,
            stage=e.stage,
            stages=len(e.plan.stages),
            next_checkpoint=e.next_checkpoint,
            updated_at=e.updated_at,
        )
        for e in found
    ]
    return web.json_response(ExecutionList(executions=rows).to_api())


async def get_execution(request: web.Request) -> web.Response:
    """The view, rendered again only when the execution has a new event (or after
    ``view_cache.MAX_AGE`` seconds): one store read per request otherwise."""
    from connectsw.web.app import RUNS, VIEWS

    license, _ = await authenticate_session(request)
    views = request.app[VIEWS]
    execution_id = request.match_info["id"]
    known, owner = views.owner(execution_id)
    if not known:
        execution = await _own(request, license)
        views.remember_owner(execution_id, execution.license_id)
    elif owner != license.id:
        raise ApiError("no_such_resource", f"no execution {execution_id}", 404)
    store = request.app[RUNS].engine.store
    seq = await _indexed_read(store, store.last_event_seq, execution_id)
    body = views.get(execution_id, seq)
    if body is None:
        body = json.dumps(await _blocking(_view, request, execution_id)).encode()
        views.put(execution_id, seq, body)
    return web.Response(body=body, content_type="application/json")


async def checkpoint(request: web.Request) -> web.Response:
    from connectsw.web.app import METRICS, RUNS

    license, session = await authenticate_session(request)
    execution = await _own(request, license)
    body = await _body(request, CheckpointBody)
    runs = request.app[RUNS]
    by = f"session {session.id}"
    decided = await _blocking(
        runs.engine.decide, execution.id, Decision(body.decision), body.feedback, by=by
    )
    if decided.status in RUNNABLE:
        runs.start(execution.id)
    elif decided.status.finished:  # approving the last checkpoint completes it
        request.app[METRICS].run_ended(decided.status.value)
    answer = Decided(
        execution_id=decided.id, status=decided.status, next_checkpoint=decided.next_checkpoint
    )
    return web.json_response(answer.to_api())


async def resume(request: web.Request) -> web.Response:
    from connectsw.web.app import RUNS

    license, _ = await authenticate_session(request)
    execution = await _own(request, license)
    if execution.status is ExecutionStatus.CANCELLED:  # as local mode: exit 8
        raise ApiError(
            "cancelled", f"execution {execution.id} was cancelled; nothing to resume", 409
        )
    if execution.status in FINISHED:
        raise ApiError(
            "invalid_state", f"execution {execution.id} is already {execution.status.value}", 409
        )
    if execution.status not in RUNNABLE:
        raise ApiError(
            "invalid_state",
            f"execution {execution.id} is {execution.status.value}: decide at its checkpoint",
            409,
        )
    request.app[RUNS].start(execution.id)
    return web.json_response(await _blocking(_view, request, execution.id), status=202)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``id`` is the event's seq, ``event`` its kind, ``data`` its
    JSON. Ends once the execution is stopped and every event was sent."""
    from connectsw.web.app import RUNS

    license, _ = await authenticate_session(request)
    execution = await _own(request, license)
    after = last_event_id(request)
    runs = request.app[RUNS]
    store = runs.engine.store
    current_workspace = execution.workspace
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        # Status first: events written before a stop are then all in the read below.
        current = await _blocking(store.get_execution, execution.id)
        stopped = current is None or (
            runs.engine.status(current) in STOPPED and not runs.running(execution.id)
        )
        batch = await _blocking(store.events, execution.id, after=after)
        for event in batch:
            after = event.seq
            data = json.dumps(scrub(event.to_api(), current_workspace, runs.settings.data_dir))
            await response.write(f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode())
            quiet_since = loop.time()
        if stopped and not batch:
            break
        if loop.time() - quiet_since > KEEPALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            quiet_since = loop.time()
        if not batch:
            await asyncio.sleep(EVENT_POLL_SECONDS)
    await response.write_eof()
    return response


#: Event ids are store sequence numbers: 0 to the largest 64-bit signed integer.
MAX_EVENT_ID = 2**63 - 1


def last_event_id(request: web.Request) -> int:
    """The event id to resume after: ``Last-Event-ID``, else ``?after=``, else 0.

    400 for anything but a whole number in 0..:data:`MAX_EVENT_ID` (a larger one
    overflowed the store's integer once the stream had started: a broken 500).
    """
    text = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        after = int(text)
    except ValueError:
        raise ApiError("bad_request", "Last-Event-ID: expected an event id (a number)") from None
    if not 0 <= after <= MAX_EVENT_ID:
        raise ApiError("bad_request", f"Last-Event-ID: expected 0 to {MAX_EVENT_ID}")
    return after


def _inside(root: Path, relative: str) -> Path:
    """``root / relative`` if it resolves (symbolic links followed) inside ``root``."""
    base = root.resolve()
    try:
        target = (base / relative).resolve()
        if target != base and base not in target.parents:
            raise NotFound(f"no artifact {relative}")
        if not target.is_file():
            raise NotFound(f"no artifact {relative}")
    except OSError:  # a name too long for the file system, ...: no such file (was a 500)
        raise NotFound(f"no artifact {relative}") from None
    return target


async def artifact(request: web.Request) -> web.FileResponse:
    license, _ = await authenticate_session(request)
    execution = await _own(request, license)
    relative = request.match_info["path"]
    if "\x00" in relative or Path(relative).is_absolute() or ".git" in Path(relative).parts:
        raise ApiError("no_such_resource", f"no artifact {relative}", 404)
    target = await _blocking(_inside, Path(execution.workspace), relative)
    return web.FileResponse(target, headers={"Content-Type": "application/octet-stream"})


async def bundle(request: web.Request) -> web.StreamResponse:
    from connectsw.core.workspace import create_bundle, has_commits

    license, _ = await authenticate_session(request)
    execution = await _own(request, license)
    workspace = Path(execution.workspace)
    if not await _blocking(has_commits, workspace):
        raise ApiError("invalid_state", f"execution {execution.id} has no commits yet", 409)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "execution.bundle"
        await _blocking(create_bundle, workspace, path)
        response = web.StreamResponse(headers={"Content-Type": "application/x-git-bundle"})
        response.content_length = path.stat().st_size
        await response.prepare(request)
        with open(path, "rb") as fh:
            while chunk := await _blocking(fh.read, 1 << 20):
                await response.write(chunk)
        await response.write_eof()
        return response


async def upload_bundle(request: web.Request) -> web.Response:
    from connectsw.web.app import SETTINGS, UPLOADS

    license, _ = await authenticate_session(request)
    limit = request.app[SETTINGS].server.max_bundle_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("bundle_too_large", f"the bundle is over the limit of {limit} bytes", 413)
    uploads = request.app[UPLOADS]
    bundle_id = "bnd_" + secrets.token_hex(12)
    path = uploads.new_path(license.id, bundle_id)
    size = 0
    try:
        with open(path, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise ApiError(
                        "bundle_too_large", f"the bundle is over the limit of {limit} bytes", 413
                    )
                fh.write(chunk)
        from connectsw.core.workspace import verify_bundle

        if size == 0 or not await _blocking(verify_bundle, path):
            raise ApiError("bad_request", "the body is not a git bundle")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return web.json_response(BundleUploaded(bundle_id=bundle_id, bytes=size).to_api(), status=201)


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The execution's id (``executionId``).",
    "schema": {"type": "string"},
}
_AUTH_ERRORS = (401, 403, 429, 500)


def _operation(
    operation_id: str, summary: str, responses: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["executions"],
        "security": openapi.KEY_AND_SESSION,
        **more,
        "responses": responses,
    }


def _binary(media_type: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string", "contentMediaType": media_type}}},
    }


OPENAPI_PATHS: openapi.Paths = {
    "/v1/execute": {
        "post": _operation(
            "execute",
            "Plan a request in a server-side workspace and start it.",
            {
                "201": openapi.json_response(ExecuteResponse, "Planned and started."),
                **openapi.errors(400, 404, 413, *_AUTH_ERRORS),
            },
            requestBody=openapi.body(ExecuteBody),
        )
    },
    "/v1/executions": {
        "get": _operation(
            "listExecutions",
            "The license's executions, newest first.",
            {
                "200": openapi.json_response(ExecutionList, "The executions."),
                **openapi.errors(400, *_AUTH_ERRORS),
            },
            parameters=[
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "At most this many (default 20).",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                }
            ],
        )
    },
    "/v1/execution/{id}": {
        "get": _operation(
            "getExecution",
            "The execution's status, checkpoint and tasks.",
            {
                "200": openapi.json_response(ExecutionView, "The execution."),
                **openapi.errors(404, *_AUTH_ERRORS),
            },
            parameters=[_ID],
        )
    },
    "/v1/execution/{id}/checkpoint": {
        "post": _operation(
            "decideCheckpoint",
            "Decide at the checkpoint the execution waits at; the next stage starts at once.",
            {
                "200": openapi.json_response(Decided, "Decided."),
                **openapi.errors(400, 404, 409, 413, *_AUTH_ERRORS),
            },
            parameters=[_ID],
            requestBody=openapi.body(CheckpointBody),
        )
    },
    "/v1/execution/{id}/resume": {
        "post": _operation(
            "resumeExecution",
            "Run an interrupted or failed execution again.",
            {
                "202": openapi.json_response(ExecutionView, "Started again."),
                **openapi.errors(404, 409, *_AUTH_ERRORS),
            },
            parameters=[_ID],
        )
    },
    "/v1/execution/{id}/events": {
        "get": _operation(
            "executionEvents",
            "The execution's events as server-sent events (``id``: seq, ``event``: kind,"
            " ``data``: the Event as JSON); the stream ends once the execution stops.",
            {
                "200": {
                    "description": "The event stream.",
                    "content": {
                        # As OpenAPI 3.2's itemSchema (and tools reading 3.1 streams):
                        # the schema of one event; ``data`` is the Event as JSON.
                        "text/event-stream": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "event", "data"],
                                "properties": {
                                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                                    "event": {"type": "string"},
                                    "data": {
                                        "type": "string",
                                        "contentMediaType": "application/json",
                                        "contentSchema": openapi.Schema(Event, "serialization"),
                                    },
                                },
                            }
                        }
                    },
                },
                **openapi.errors(400, 404, *_AUTH_ERRORS),
            },
            parameters=[
                _ID,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this event id (seq).",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "Like Last-Event-ID, for clients that cannot set headers.",
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
                },
            ],
        )
    },
    "/v1/execution/{id}/artifacts/{path}": {
        "get": _operation(
            "getArtifact",
            "A file of the execution's workspace (paths out of it are refused, 404);"
            " Range and conditional requests are honoured.",
            {
                "200": _binary("application/octet-stream", "The file."),
                **openapi.errors(404, *_AUTH_ERRORS),
            },
            parameters=[
                _ID,
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "description": "The file's path relative to the workspace (may hold '/').",
                    "schema": {"type": "string"},
                },
            ],
        )
    },
    "/v1/execution/{id}/bundle": {
        "get": _operation(
            "getBundle",
            "The workspace's history as a git bundle (for ``pull``).",
            {
                "200": _binary("application/x-git-bundle", "The bundle."),
                **openapi.errors(404, 409, *_AUTH_ERRORS),
            },
            parameters=[_ID],
        )
    },
    "/v1/bundles": {
        "post": _operation(
            "uploadBundle",
            "Upload a git bundle for ``new feature`` / ``fix`` (size limit:"
            " ``server.max_bundle_bytes``).",
            {
                "201": openapi.json_response(BundleUploaded, "Stored."),
                **openapi.errors(400, 413, *_AUTH_ERRORS),
            },
            requestBody={
                "required": True,
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                    }
                },
            },
        )
    },
}
