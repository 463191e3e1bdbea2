"""Property-based run of the API against its own OpenAPI document (issue 6, "Done when").

schemathesis 4 reads ``GET /v1/openapi.json`` from a real ``connectsw serve``
subprocess and sends generated requests to every operation, valid ones
(``GenerationMode.POSITIVE``) and invalid ones (``NEGATIVE``), with a valid license
key and session token. Every response must be no 5xx and must conform to the
document: a documented status, its content type, its headers and its body schema.
At least 2,000 cases in all.

``POST /v1/execute`` starts a real execution for every valid body, so it gets
fewer cases (:data:`EXECUTE_EXAMPLES`) to keep the run short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402  (schemathesis's transport)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.serving import Served, http, start_server  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = 60
EXECUTE_EXAMPLES = 15
MIN_CASES = 2000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    data = tmp_path / "data"
    data.mkdir()
    server = start_server(
        data,
        # Thousands of requests from one address and one license: no 429s in the way.
        CONNECTSW_SERVER__IP_RATE_LIMIT="1000000/minute",
    )
    try:
        yield server
    finally:
        server.stop()


def test_generated_requests_get_no_5xx_and_conform_to_the_document(served: Served) -> None:
    key = served.issue("ENTERPRISE")  # the highest per-license rate limit
    status, _, body = http("POST", f"{served.url}/v1/sessions", headers={"X-License-Key": key})
    assert status == 201, body
    auth = {"X-License-Key": key, "X-Session-Token": json.loads(body)["token"]}
    # A real execution at its first checkpoint, so that generated requests reach the
    # handlers' work on it (view, events, artifacts, bundle, resume, decisions), not
    # only the 404 of an unknown id.
    status, _, body = http(
        "POST",
        f"{served.url}/v1/execute",
        {"command": "new product", "args": ["Recipe planner"]},
        {**auth, "Content-Type": "application/json"},
    )
    assert status == 201, body
    execution_id = json.loads(body)["executionId"]
    _wait_for(served.url, execution_id, auth, "awaiting_checkpoint")

    schema = schemathesis.openapi.from_url(f"{served.url}/v1/openapi.json")
    document = schema.raw_schema
    session = requests.Session()
    cases: dict[str, int] = {}
    failures: list[str] = []
    started = time.monotonic()
    everything = [(path, method) for path, item in document["paths"].items() for method in item]
    # On the real execution, decisions last: once decided, its next stage runs (and
    # an event stream follows a running execution to its end).
    on_real = sorted(
        (op for op in everything if "{id}" in op[0] and not op[0].startswith("/v1/sessions")),
        key=lambda op: op[0].endswith("/checkpoint"),
    )
    rounds: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
        ({}, everything),
        ({"id": execution_id}, on_real),
    ]
    for path_parameters, operations in rounds:
        for path, method in operations:
            operation = schema[path][method.upper()]
            is_execute = operation.label == "POST /v1/execute"
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} [{mode.value}{', real id' * bool(path_parameters)}]"
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters or None
                )
                examples = EXECUTE_EXAMPLES if is_execute else EXAMPLES
                run = _runner(strategy, examples, served.url, session, auth, cases, label)
                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing to negate (an operation without parameters or body)
                except Exception as exc:
                    failures.append(f"{label}: {_explained(exc)}")
    total = sum(cases.values())
    print(f"\nschemathesis: {total} cases in {time.monotonic() - started:.0f} s: {cases}")
    assert not failures, "\n\n".join(failures)
    assert total >= MIN_CASES, cases


def _explained(exc: BaseException) -> str:
    """The error and, for a group (Hypothesis's FlakyFailure is one), each error in it:
    the summary alone ("Failed on the first call but did not on a subsequent one")
    does not say what failed."""
    if isinstance(exc, BaseExceptionGroup):
        return f"{exc}: " + "; ".join(_explained(sub) for sub in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _wait_for(url: str, execution_id: str, auth: dict[str, str], status: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        code, _, body = http("GET", f"{url}/v1/execution/{execution_id}", headers=auth)
        assert code == 200, body
        if json.loads(body)["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{execution_id} never reached {status}")


def _runner(
    strategy: Any,
    examples: int,
    url: str,
    session: requests.Session,
    auth: dict[str, str],
    cases: dict[str, int],
    label: str,
) -> Any:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        cases[label] = cases.get(label, 0) + 1
        case.call_and_validate(
            base_url=url, session=session, headers=auth, checks=CHECKS, timeout=60
        )

    return run
