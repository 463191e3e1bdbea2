"""The OpenAPI document: valid OpenAPI 3.1, and exactly the app's routes (both ways)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from connectsw.conf.settings import Settings
from connectsw.web import openapi
from connectsw.web.app import make_app
from connectsw.web.errors import ErrorResponse

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def routes(app: web.Application) -> set[tuple[str, str]]:
    """(path template, method) of every route; aiohttp's automatic HEAD of a GET is
    the GET's (``add_get(allow_head=True)``) and not documented separately."""
    found = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        found.add((resource.canonical, route.method.lower()))
    return {(p, m) for p, m in found if not (m == "head" and (p, "get") in found)}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.build(make_app(Settings()))
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_route_is_documented_and_every_documented_operation_is_a_route() -> None:
    app = make_app(Settings())
    document = openapi.build(app)
    assert routes(app) == documented(document)


def test_every_error_status_has_the_error_shape() -> None:
    document = openapi.build(make_app(Settings()))
    error_ref = "#/components/schemas/ErrorResponse"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, (path, method, status)
    assert document["components"]["schemas"]["ErrorResponse"]["properties"]["error"]


def test_schemas_come_from_the_handlers_models() -> None:
    schemas = openapi.build(make_app(Settings()))["components"]["schemas"]
    from connectsw.web.executions import ExecuteBody

    body = ExecuteBody.model_json_schema(by_alias=True, ref_template=openapi.REF_TEMPLATE)
    assert schemas["ExecuteBody"]["properties"] == body["properties"]
    assert "bundleId" in schemas["ExecuteBody"]["properties"]
    assert schemas["ExecuteBody"]["additionalProperties"] is False
    assert schemas["ErrorDetail"]["required"] == ["code", "message"]
    # The responses' view of Plan includes the derived ``checkpoints``.
    assert "checkpoints" in schemas["Plan"]["properties"]


def test_security_schemes_and_requirements() -> None:
    document = openapi.build(make_app(Settings()))
    schemes = document["components"]["securitySchemes"]
    assert schemes["licenseKey"] == {"type": "apiKey", "in": "header", "name": "X-License-Key"}
    assert schemes["sessionToken"]["name"] == "X-Session-Token"
    assert schemes["bearer"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/v1/openapi.json"]["get"]["security"] == []
    assert paths["/v1/sessions"]["post"]["security"] == [{"licenseKey": []}]
    assert {"licenseKey": [], "bearer": []} in paths["/v1/execute"]["post"]["security"]


def test_a_module_contributes_its_own_paths() -> None:
    app = make_app(Settings())
    extra = {
        "/v1/extra": {
            "get": {
                "responses": {"200": openapi.json_response(ErrorResponse, "x")},
            }
        }
    }
    openapi.add_paths(app, extra)
    document = openapi.build(app)
    assert "/v1/extra" in document["paths"]
    with pytest.raises(ValueError, match="documented twice"):
        openapi.add_paths(app, extra)
        openapi.build(app)


def test_served_without_credentials(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fetch() -> tuple[int, dict[str, Any]]:
        client = TestClient(TestServer(make_app(Settings(data_dir=tmp_path))))
        await client.start_server()
        try:
            response = await client.get("/v1/openapi.json")
            return response.status, await response.json()
        finally:
            await client.close()

    status, document = asyncio.run(fetch())
    assert status == 200
    assert document == openapi.build(make_app(Settings(data_dir=tmp_path)))
