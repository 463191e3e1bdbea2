"""``GET /v1/memory/context?projectId=...&query=...`` (reference "Get Memory Context").

Answers from the project memory (:mod:`connectsw.core.memory`): the hybrid search
(meaning and words) over what the license's executions of that project wrote
there (their documents and the people's feedback, :mod:`connectsw.core.memory_auto`).
``projectId`` is a plan name (the product's slug, e.g. ``recipe-planner``) or an
execution id of the license; the memory project is ``LICENSE/NAME``, so another
license's project is simply empty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from connectsw.core.models import ApiModel
from connectsw.web import openapi
from connectsw.web.errors import ApiError
from connectsw.web.sessions import authenticate_session

#: Items answered at most.
MAX_ITEMS = 10


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


def recall(engine: Any, license_id: str, project: str, query: str) -> list[ContextItem]:
    """The license's memories of ``project`` best matching ``query`` (relevance 0..1),
    at most :data:`MAX_ITEMS`. Blocking (store and memory reads)."""
    from connectsw.core.memory import memory_exists, open_memory

    execution = engine.store.get_execution(project) if project.startswith("exec_") else None
    if execution is not None and execution.license_id == license_id:
        project = execution.plan.name
    if not memory_exists(engine.settings):
        return []
    hits = open_memory(engine.settings).search(f"{license_id}/{project}", query, MAX_ITEMS)
    return [ContextItem(**h.model_dump(exclude={"id"})) for h in hits]


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
    engine = request.app[RUNS].engine
    items = await asyncio.get_running_loop().run_in_executor(
        None, recall, engine, license.id, project, query
    )
    return web.json_response(MemoryContext(context=items).to_api())


OPENAPI_PATHS: openapi.Paths = {
    "/v1/memory/context": {
        "get": {
            "operationId": "memoryContext",
            "summary": "The project's memories (the license's own), ranked for a query.",
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
