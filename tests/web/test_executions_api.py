"""The v1 execution API over real HTTP: ownership, events, artifacts, bundles, errors."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import Served, http, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_server(
        tmp_path_factory.mktemp("server") / "data",
        CONNECTSW_SERVER__MAX_BUNDLE_BYTES="4096",
        # Every test here comes from one address: the per-IP limit is not what they test.
        CONNECTSW_SERVER__IP_RATE_LIMIT="100000/minute",
    )
    yield server
    server.stop()


class Client:
    """One license with one session."""

    def __init__(self, served: Served) -> None:
        self.url = served.url
        self.data = served.data
        self.key = served.issue()
        status, _, body = http(
            "POST", self.url + "/v1/sessions", headers={"X-License-Key": self.key}
        )
        assert status == 201, body
        self.token = json.loads(body)["token"]
        self.session_id = json.loads(body)["sessionId"]

    def headers(self, **more: str) -> dict[str, str]:
        return {"X-License-Key": self.key, "Authorization": f"Bearer {self.token}", **more}

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, headers, raw = http(method, self.url + path, body, self.headers(), **kw)
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, json.loads(raw)
        return status, raw

    def execute(self, title: str = "Recipe planner") -> str:
        status, body = self.call("POST", "/v1/execute", {"command": "new product", "args": [title]})
        assert status == 201, body
        return str(body["executionId"])

    def wait_for(self, execution_id: str, wanted: str) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, view = self.call("GET", f"/v1/execution/{execution_id}")
            assert status == 200, view
            if view["status"] == wanted:
                return dict(view)
            time.sleep(0.2)
        raise AssertionError(f"{execution_id} never became {wanted}: {view}")


@pytest.fixture(scope="module")
def alice(served: Served) -> Client:
    return Client(served)


@pytest.fixture(scope="module")
def bob(served: Served) -> Client:
    return Client(served)


@pytest.fixture(scope="module")
def waiting(alice: Client) -> str:
    """An execution of Alice's, at its first checkpoint."""
    execution_id = alice.execute()
    alice.wait_for(execution_id, "awaiting_checkpoint")
    return execution_id


def test_the_reference_shapes(alice: Client, waiting: str) -> None:
    status, view = alice.call("GET", f"/v1/execution/{waiting}")
    assert status == 200
    checkpoint = view["checkpoint"]
    assert checkpoint["type"] == "prd_complete"
    assert checkpoint["options"] == ["approve", "request_changes", "cancel"]
    artifact = checkpoint["artifacts"][0]
    assert artifact["path"] == "docs/PRD.md" and artifact["preview"].startswith("# ")
    status, raw = alice.call("GET", artifact["url"])
    assert status == 200 and raw.startswith(b"# ")
    status, listed = alice.call("GET", "/v1/executions")
    assert waiting in [e["executionId"] for e in listed["executions"]]


def test_another_license_sees_nothing_of_it(bob: Client, waiting: str) -> None:
    for method, path in [
        ("GET", f"/v1/execution/{waiting}"),
        ("GET", f"/v1/execution/{waiting}/events"),
        ("GET", f"/v1/execution/{waiting}/artifacts/docs/PRD.md"),
        ("GET", f"/v1/execution/{waiting}/bundle"),
        ("POST", f"/v1/execution/{waiting}/resume"),
    ]:
        status, body = bob.call(method, path)
        assert (status, body["error"]["code"]) == (404, "no_such_resource"), path
    status, body = bob.call("POST", f"/v1/execution/{waiting}/checkpoint", {"decision": "cancel"})
    assert status == 404
    status, listed = bob.call("GET", "/v1/executions")
    assert waiting not in [e["executionId"] for e in listed["executions"]]


def test_a_session_of_another_license_is_refused(alice: Client, bob: Client, waiting: str) -> None:
    headers = {"X-License-Key": alice.key, "X-Session-Token": bob.token}
    status, _, raw = http("GET", f"{alice.url}/v1/execution/{waiting}", headers=headers)
    assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_session"


@pytest.mark.parametrize(
    "path",
    [
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        ".git/config",
        "docs/../../other/x",
        "link-out",
    ],
)
def test_artifact_paths_outside_the_workspace_are_refused(
    alice: Client, waiting: str, path: str
) -> None:
    license_id = alice.key.rsplit("-", 1)[0]
    workspace = alice.data / "workspaces" / license_id / waiting
    link = workspace / "link-out"
    if not link.is_symlink():
        os.symlink("/etc/passwd", link)
    status, _, raw = http(
        "GET", f"{alice.url}/v1/execution/{waiting}/artifacts/{path}", headers=alice.headers()
    )
    assert status == 404, raw
    assert b"root:" not in raw


def test_events_resume_after_the_last_event_id(alice: Client, waiting: str) -> None:
    status, _, raw = http(
        "GET", f"{alice.url}/v1/execution/{waiting}/events", headers=alice.headers()
    )
    assert status == 200
    ids = [int(line[4:]) for line in raw.decode().splitlines() if line.startswith("id: ")]
    assert ids == sorted(ids) and len(ids) >= 3
    status, _, rest = http(
        "GET",
        f"{alice.url}/v1/execution/{waiting}/events",
        headers=alice.headers(**{"Last-Event-ID": str(ids[1])}),
    )
    again = [int(line[4:]) for line in rest.decode().splitlines() if line.startswith("id: ")]
    assert again == ids[2:]
    kinds = [line[7:] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert kinds[-1] == "checkpoint.reached"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "bad_request"),
        (b'{"command": "new product", "args": "x"}', "bad_request"),
        (b'{"command": "new product", "args": ["x"], "surprise": 1}', "bad_request"),
        (b'{"command": "rm -rf", "args": ["x"]}', "bad_request"),
        (b'{"command": "new product", "bundleId": "bnd_nope"}', "no_such_resource"),
        (b"[]", "bad_request"),
    ],
)
def test_bad_execute_bodies_get_a_4xx(alice: Client, body: bytes, code: str) -> None:
    status, _, raw = http(
        "POST",
        alice.url + "/v1/execute",
        headers={**alice.headers(), "Content-Type": "application/json"},
        data=body,
    )
    assert 400 <= status < 500 and json.loads(raw)["error"]["code"] == code


def test_a_decision_out_of_turn_is_409(alice: Client, waiting: str) -> None:
    status, body = alice.call("POST", f"/v1/execution/{waiting}/checkpoint", {"decision": "maybe"})
    assert status == 400
    other = alice.execute("Other thing")
    alice.wait_for(other, "awaiting_checkpoint")
    status, body = alice.call("POST", f"/v1/execution/{other}/checkpoint", {"decision": "cancel"})
    assert status == 200 and body["status"] == "cancelled"
    status, body = alice.call("POST", f"/v1/execution/{other}/checkpoint", {"decision": "approve"})
    assert status == 409, body


def test_bundles_over_the_limit_are_refused(alice: Client, tmp_path: Path) -> None:
    status, _, raw = http(
        "POST", alice.url + "/v1/bundles", headers=alice.headers(), data=b"x" * 5000
    )
    assert (status, json.loads(raw)["error"]["code"]) == (413, "bundle_too_large")
    status, _, raw = http("POST", alice.url + "/v1/bundles", headers=alice.headers(), data=b"junk")
    assert (status, json.loads(raw)["error"]["code"]) == (400, "bad_request")
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "a"], check=True, env=env)
    subprocess.run(
        ["git", "-C", str(repo), "bundle", "create", "-q", "../b.bundle", "HEAD"], check=True
    )
    status, _, raw = http(
        "POST",
        alice.url + "/v1/bundles",
        headers=alice.headers(),
        data=(tmp_path / "b.bundle").read_bytes(),
    )
    assert status == 201, raw


def test_a_logout_is_seen_at_once_despite_the_session_cache(served: Served) -> None:
    carol = Client(served)
    status, _ = carol.call("GET", "/v1/executions")
    assert status == 200  # the session is now in the server's cache (5 s window)
    status, _, raw = http(
        "DELETE", f"{served.url}/v1/sessions/{carol.session_id}", headers=carol.headers()
    )
    assert status == 204, raw
    status, body = carol.call("GET", "/v1/executions")
    assert (status, body["error"]["code"]) == (401, "session_ended")


def test_metrics_count_executions_and_active_licenses(served: Served, alice: Client) -> None:
    def scrape() -> dict[str, float]:
        _, _, raw = http("GET", served.url + "/metrics")
        values = {}
        for line in raw.decode().splitlines():
            if line.startswith("connectsw_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    before = scrape()
    done = alice.execute("Counted thing")
    alice.wait_for(done, "awaiting_checkpoint")
    after = scrape()
    started = "connectsw_executions_started_total"
    assert after[started] == before.get(started, 0) + 1
    assert after['connectsw_licenses_active{tier="PRO"}'] == len(served.keys)
    assert after['connectsw_licenses_active{tier="FREE"}'] == 0
    completed = "connectsw_executions_completed_total"
    for _ in range(3):
        alice.wait_for(done, "awaiting_checkpoint")
        status, body = alice.call(
            "POST", f"/v1/execution/{done}/checkpoint", {"decision": "approve"}
        )
        assert status == 200, body
    alice.wait_for(done, "completed")
    deadline = time.monotonic() + 10
    while scrape().get(completed, 0) != before.get(completed, 0) + 1:
        assert time.monotonic() < deadline, "the completed run was not counted"
        time.sleep(0.1)


def test_memory_context_answers_from_the_projects_executions(
    alice: Client, bob: Client, waiting: str
) -> None:
    status, body = alice.call(
        "GET", "/v1/memory/context?projectId=recipe-planner&query=product%20requirements"
    )
    assert status == 200, body
    items = body["context"]
    assert items and items[0]["source"] == "docs/PRD.md"
    assert 0 < items[0]["relevance"] <= 1 and items[0]["content"].startswith("# ")
    assert set(items[0]) == {"type", "content", "relevance", "source", "timestamp"}
    status, body = bob.call("GET", "/v1/memory/context?projectId=recipe-planner&query=product")
    assert (status, body) == (200, {"context": []})  # another license's project is not there
    status, body = alice.call("GET", "/v1/memory/context?query=x")
    assert status == 400


def test_memory_context_is_the_semantic_memory(alice: Client, bob: Client, waiting: str) -> None:
    """By an execution id too; ranked by meaning and words; typed as memory types."""
    query = "what%20must%20the%20product%20do%20for%20its%20users"
    status, body = alice.call("GET", f"/v1/memory/context?projectId={waiting}&query={query}")
    assert status == 200, body
    top = body["context"][0]
    assert (top["source"], top["type"]) == ("docs/PRD.md", "decision")
    assert 0 < top["relevance"] <= 1 and top["timestamp"].endswith(("Z", "+00:00"))
    status, body = bob.call("GET", f"/v1/memory/context?projectId={waiting}&query={query}")
    assert (status, body) == (200, {"context": []})  # not Bob's execution


def test_a_task_graph_is_never_taken_from_a_client(alice: Client) -> None:
    """Found by the new-user trial: `run` over the API read the server's files (its
    errors told what they held) and ran a graph's shell commands on the server."""
    for path in ("/etc/passwd", "graph.yaml", str(alice.data / "secrets" / "license-secret")):
        status, body = alice.call("POST", "/v1/execute", {"command": "run", "args": [path]})
        assert (status, body["error"]["code"]) == (400, "bad_request"), body
        assert path not in body["error"]["message"]


def test_request_changes_needs_feedback(alice: Client, waiting: str) -> None:
    for body in ({"decision": "request_changes"}, {"decision": "request_changes", "feedback": " "}):
        status, answer = alice.call("POST", f"/v1/execution/{waiting}/checkpoint", body)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), answer


def test_a_nul_character_is_refused_naming_the_field(alice: Client, waiting: str) -> None:
    status, body = alice.call("POST", "/v1/execute", {"command": "new product", "args": ["a\x00b"]})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert body["error"]["message"].startswith("args.0:")
    status, body = alice.call(
        "POST", f"/v1/execution/{waiting}/checkpoint", {"decision": "approve", "feedback": "\x00"}
    )
    assert (status, body["error"]["message"][:9]) == (400, "feedback:")


def test_a_lone_surrogate_is_refused_naming_the_field(alice: Client, waiting: str) -> None:
    """Trial 5, item 9 (the API's side): a JSON ``\\udce9`` escape decodes to a text no
    record can hold; it was stored and the write failed."""
    request = {"command": "new product", "args": ["a\udce9"]}
    status, body = alice.call("POST", "/v1/execute", request)
    assert (status, body["error"]["code"]) == (400, "bad_request"), body
    assert body["error"]["message"].startswith("args.0: a lone surrogate")
    status, body = alice.call(
        "POST",
        f"/v1/execution/{waiting}/checkpoint",
        {"decision": "request_changes", "feedback": "caf\udce9"},
    )
    assert (status, body["error"]["message"][:9]) == (400, "feedback:"), body
    status, view = alice.call("GET", f"/v1/execution/{waiting}")
    assert view["status"] == "awaiting_checkpoint", view


def test_no_server_path_reaches_a_client(served: Served, alice: Client, waiting: str) -> None:
    import sys

    _, view = alice.call("GET", f"/v1/execution/{waiting}")
    _, _, events = http(
        "GET", f"{alice.url}/v1/execution/{waiting}/events", headers=alice.headers()
    )
    for text in (json.dumps(view), events.decode()):
        assert str(served.data) not in text
        assert sys.executable not in text
    assert waiting in view["workspace"]  # says where it is: on the server, pull it


def test_a_tier_without_the_server_feature_opens_no_session(served: Served) -> None:
    key = served.issue("FREE")
    status, _, raw = http("POST", served.url + "/v1/sessions", headers={"X-License-Key": key})
    assert (status, json.loads(raw)["error"]["code"]) == (403, "feature_not_included")


def test_a_very_long_url_gets_the_json_error_shape(alice: Client) -> None:
    """Found by the property-based run: aiohttp's 8 KiB request-line limit answered in
    plain text, without X-Error-Code, before the app ran."""
    query = "%F1%83%AE%A1" * 1500  # 6,000 characters, 18,000 bytes encoded
    status, headers, raw = http(
        "GET", f"{alice.url}/v1/memory/context?projectId=x&query={query}", headers=alice.headers()
    )
    assert status == 400 and headers.get("X-Error-Code") == "bad_request", raw[:200]
    assert json.loads(raw)["error"]["code"] == "bad_request"
