"""``GET /v1/memory/context?projectId=...&query=...`` (reference "Get Memory Context").

Until the semantic memory (issue 8) lands this answers from a simple store: what
the license's executions of that project hold — the request, the checkpoints'
artifacts (their previews) and the people's feedback — ranked by the share of the
query's words each one contains. ``projectId`` is a plan name (the product's slug,
e.g. ``recipe-planner``) or an execution id; only the license's own executions
are read, so another license's project is simply empty.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from connectsw.core.models import ApiModel, Execution
from connectsw.web import openapi
from connectsw.web.errors import ApiError
from connectsw.web.sessions import authenticate_session

#: Items answered at most.
MAX_ITEMS = 10
#: Executions of the license looked at, newest first.
MAX_EXECUTIONS = 200
_WORD = re.compile(r"\w+")


class ContextItem(ApiModel):
    """One remembered piece of a project (reference's shape)."""

    type: str
    content: str
    relevance: float = Field(ge=0, le=1)
    source: str
    timestamp: datetime


class MemoryContext(ApiModel):
    """``GET /v1/memory/context``."""

    context: list[ContextItem]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/memory/context", context)
    openapi.add_paths(app, OPENAPI_PATHS)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _items(execution: Execution, checkpoints: list[Any]) -> list[tuple[str, str, str, datetime]]:
    """(type, content, source, timestamp) of what an execution holds."""
    found = [("request", execution.request.text, execution.id, execution.created_at)]
    for cp in checkpoints:
        for artifact in cp.artifacts:
            kind = "architecture_decision" if "adr" in artifact.path.lower() else artifact.type
            content = artifact.preview or artifact.description
            found.append((kind, content, artifact.path, cp.created_at))
        if cp.feedback:
            found.append(("feedback", cp.feedback, f"{execution.id}:{cp.type}", cp.decided_at
                          or cp.created_at))  # fmt: skip
    return found


def recall(store: Any, license_id: str, project: str, query: str) -> list[ContextItem]:
    """The project's items ranked by the share of ``query``'s words they contain
    (relevance 0..1); the newest first among equals. Blocking (store reads)."""
    wanted = _words(query)
    scored: list[tuple[float, datetime, ContextItem]] = []
    for execution in store.list_executions(MAX_EXECUTIONS, license_id=license_id):
        if project not in (execution.plan.name, execution.id):
            continue
        for kind, content, source, at in _items(execution, store.checkpoints(execution.id)):
            if not content:
                continue
            share = len(wanted & _words(content)) / len(wanted) if wanted else 1.0
            if share > 0:
                item = ContextItem(
                    type=kind,
                    content=content,
                    relevance=round(share, 3),
                    source=source,
                    timestamp=at,
                )
                scored.append((share, at, item))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    return [item for _, _, item in scored[:MAX_ITEMS]]


async def context(request: web.Request) -> web.Response:
    import asyncio

    from connectsw.web.app import RUNS

    license, _ = await authenticate_session(request)
    project = request.query.get("projectId", "").strip()
    query = request.query.get("query", "")
    if not project:
        raise ApiError("bad_request", "projectId: required (a plan name or an execution id)")
    if len(project) > 100 or len(query) > 500:
        raise ApiError("bad_request", "projectId or query: too long")
    store = request.app[RUNS].engine.store
    items = await asyncio.get_running_loop().run_in_executor(
        None, recall, store, license.id, project, query
    )
    return web.json_response(MemoryContext(context=items).to_api())


OPENAPI_PATHS: openapi.Paths = {
    "/v1/memory/context": {
        "get": {
            "operationId": "memoryContext",
            "summary": "What the license's executions of a project hold, ranked for a query.",
            "tags": ["memory"],
            "security": openapi.KEY_AND_SESSION,
            "parameters": [
                {
                    "name": "projectId",
                    "in": "query",
                    "required": True,
                    "description": "A plan name (the product's slug) or an execution id.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                },
                {
                    "name": "query",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 500},
                },
            ],
            "responses": {
                "200": openapi.json_response(MemoryContext, "Ranked items, at most 10."),
                **openapi.errors(400, 401, 403, 429, 500),
            },
        }
    }
}
