"""The backend-engineer agent: a runnable standard-library HTTP service and its tests.

Without a model it generates the new-product scaffold deterministically; a change
to existing code (``with: {feature: ...}`` or ``with: {bug: ...}``, as the
new-feature and fix-bug workflows ask) needs a model: the agent then fails the
task, says so, and changes nothing, rather than rewriting the scaffold and
reporting success.

With a model configured (``[llm]``) the model writes the service and its tests, or
the change, from the PRD, architecture and ADRs (and the existing sources for a
change), and gets its failing tests back up to ``llm.fix_rounds`` times
(:mod:`connectsw.agents.llm.coding`).
"""

from __future__ import annotations

from pydantic import ValidationError

from connectsw.agents.base import Agent, AgentInput, AgentOutput, TaskContext
from connectsw.agents.llm.coding import write_and_fix
from connectsw.agents.llm.context import brief, sources
from connectsw.agents.llm.prompts import system_prompt
from connectsw.agents.llm.session import ModelBrief, ModelSession, open_session
from connectsw.agents.text import Product, endpoint_table, feedback_section, product_for
from connectsw.core.errors import TaskError, describe_validation_error

APP_TEMPLATE = '''\
"""HTTP service for __TITLE__: a JSON API and the static page in web/ (standard library only)."""

from __future__ import annotations

import argparse
import json
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

PRODUCT = __PRODUCT__
FEATURES = __FEATURES__
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MAX_BODY = 1_000_000


class Store:
    """Items kept in memory; a lock because the server handles requests in threads."""

    def __init__(self) -> None:
        self._items: list[dict] = []
        self._lock = threading.Lock()

    def all_items(self) -> list[dict]:
        with self._lock:
            return [dict(item) for item in self._items]

    def add(self, name: str, note: str) -> dict:
        with self._lock:
            item = {"id": len(self._items) + 1, "name": name, "note": note}
            self._items.append(item)
            return dict(item)


def parse_item(raw: bytes) -> dict:
    """The item in a request body; ValueError with a message for the client if invalid."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("body must be valid JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("'name' must be a non-empty string")
    note = payload.get("note", "")
    if not isinstance(note, str):
        raise ValueError("'note' must be a string")
    return {"name": name.strip(), "note": note}


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the JSON API or to the static files."""

    server_version = "__SLUG__/0.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test and console output quiet

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/api/info":
            self.send_json(HTTPStatus.OK, {"name": PRODUCT, "features": FEATURES})
        elif path == "/api/items":
            self.send_json(HTTPStatus.OK, {"items": self.server.store.all_items()})
        else:
            self.send_static(path)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/items":
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "invalid Content-Length"})
            return
        try:
            fields = parse_item(self.rfile.read(length))
        except ValueError as exc:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self.send_json(HTTPStatus.CREATED, self.server.store.add(**fields))

    def send_static(self, path: str) -> None:
        root = WEB_DIR.resolve()
        relative = unquote(path).lstrip("/") or "index.html"
        target = (root / relative).resolve()
        # Refuse paths that escape web/ (e.g. /../service/app.py).
        if not root.is_dir() or root not in target.parents or not target.is_file():
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        body = target.read_bytes()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self.send_body(HTTPStatus.OK, body, ctype)

    def send_json(self, status: HTTPStatus, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode("utf-8"), "application/json")

    def send_body(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    """The HTTP server with its item store."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.store = Store()


def make_server(host: str = "127.0.0.1", port: int = 8000) -> Server:
    """A bound server (port 0 picks a free port); call serve_forever() to run it."""
    return Server((host, port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Run the {PRODUCT} service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    host, port = server.server_address[:2]
    print(f"Serving {PRODUCT} on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
'''

TEST_TEMPLATE = '''\
"""Tests of the HTTP service over real HTTP (standard library unittest only)."""

from __future__ import annotations

import json
import threading
import unittest
import urllib.error
import urllib.request

from service.app import FEATURES, PRODUCT, make_server


class ServiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.server = make_server("127.0.0.1", 0)
        cls.base = "http://127.0.0.1:%d" % cls.server.server_address[1]
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.shutdown()
        cls.server.server_close()
        cls.thread.join(timeout=5)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, object]:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def test_smoke_health(self) -> None:  # "smoke" in the name: the smoke-tests gate runs it
        self.assertEqual(self.call("GET", "/health"), (200, {"status": "ok"}))

    def test_info(self) -> None:
        status, body = self.call("GET", "/api/info")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"name": PRODUCT, "features": FEATURES})

    def test_add_and_list_items(self) -> None:
        status, item = self.call("POST", "/api/items", json.dumps({"name": " First "}).encode())
        self.assertEqual(status, 201)
        self.assertEqual(item["name"], "First")
        self.assertEqual(item["note"], "")
        status, body = self.call("GET", "/api/items")
        self.assertEqual(status, 200)
        self.assertIn(item, body["items"])

    def test_invalid_json_is_400(self) -> None:
        status, body = self.call("POST", "/api/items", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(body, {"error": "body must be valid JSON"})

    def test_missing_name_is_400(self) -> None:
        status, body = self.call("POST", "/api/items", json.dumps({"note": "x"}).encode())
        self.assertEqual(status, 400)
        self.assertIn("name", body["error"])

    def test_non_object_is_400(self) -> None:
        status, body = self.call("POST", "/api/items", b"[1, 2]")
        self.assertEqual(status, 400)
        self.assertIn("error", body)

    def test_unknown_path_is_404(self) -> None:
        self.assertEqual(self.call("GET", "/api/nope")[0], 404)
        self.assertEqual(self.call("POST", "/api/nope", b"{}")[0], 404)

    def test_path_traversal_is_refused(self) -> None:
        self.assertEqual(self.call("GET", "/../service/app.py")[0], 404)


if __name__ == "__main__":
    unittest.main()
'''


class BackendEngineerInput(AgentInput):
    """Optional ``with`` keys: a feature to implement or a bug to fix in existing code."""

    feature: str | None = None
    bug: str | None = None


NO_MODEL = (
    "no LLM provider is available (the built-in agents only generate the new-product "
    "scaffold; an agent plugin with a model can do this)"
)


class BackendEngineerAgent(ModelBrief, Agent):
    """Writes service/ (standard library only) and tests/test_service.py."""

    name = "backend-engineer"
    isolation = "thread"  # a few file writes, or model calls and tests under the supervisor
    description = (
        "Writes a standard-library Python HTTP service in service/ with unittest tests; "
        "a feature or bug fix (with.feature, with.bug) needs a model and fails without one."
    )
    input_model = BackendEngineerInput

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Write the service, its README and its tests.

        Raises :class:`TaskError` for a requested ``feature`` or ``bug``: without
        a model nothing can implement it, so nothing is written.
        """
        try:
            inputs = BackendEngineerInput.model_validate(ctx.inputs)
        except ValidationError as exc:
            raise TaskError(f"invalid input: {describe_validation_error(exc)}") from None
        session = open_session(self.name, ctx)
        if session is not None:
            return self._with_model(ctx, inputs, session)
        for verb, change in (("implement", inputs.feature), ("fix", inputs.bug)):
            if change is not None:
                raise TaskError(
                    f"{self.name} cannot {verb} {' '.join(change.split())!r} without a model: "
                    f"{NO_MODEL}; nothing was changed"
                )
        product = product_for(ctx)
        artifacts = [
            ctx.write(
                "service/__init__.py",
                f'"""{product.title} service."""\n',
                type="code",
                description="Service package",
            ),
            ctx.write(
                "service/app.py", render_app(product), type="code", description="HTTP service"
            ),
            ctx.write(
                "service/README.md",
                render_readme(product, ctx.feedback),
                type="document",
                description="How to run the service",
            ),
            ctx.write("tests/__init__.py", "", type="test", description="Test package"),
            ctx.write(
                "tests/test_service.py", TEST_TEMPLATE, type="test", description="Service tests"
            ),
        ]
        return AgentOutput(
            summary=f"Wrote the {product.title} HTTP service and its tests",
            outputs={
                "entrypoint": "python -m service.app --port 8000",
                "test_command": "python -m unittest discover -s tests -t .",
            },
            artifacts=artifacts,
        )

    def _with_model(
        self, ctx: TaskContext, inputs: BackendEngineerInput, session: ModelSession
    ) -> AgentOutput:
        """The model writes (or changes) the service and its tests; tests are run and fixed."""
        change = inputs.feature or inputs.bug
        if change is not None:
            verb = "Implement this feature" if inputs.feature else "Fix this bug"
            task = f"{verb} in the existing code: {change}\n\n## Current sources\n\n{sources(ctx)}"
        else:
            task = "Build the service and its tests."
        ask = brief(ctx, task)
        system = system_prompt(self.name, ctx.workspace, files=True)
        from connectsw.conf.settings import get_settings

        rounds = get_settings().llm.fix_rounds
        done = write_and_fix(ctx, session, system, ask, (), rounds)
        return done.output(
            session.choice.model,
            test_command="python -m unittest discover -s tests -t .",
        )


def render_app(product: Product) -> str:
    """service/app.py for ``product``; repr() makes the names valid Python literals."""
    return (
        APP_TEMPLATE.replace("__TITLE__", _docstring_safe(product.title))
        .replace("__PRODUCT__", repr(product.title))
        .replace("__FEATURES__", repr(list(product.features)))
        .replace("__SLUG__", product.slug)
    )


def _docstring_safe(text: str) -> str:
    # The title goes inside a triple-quoted docstring: no quotes or backslashes there.
    return " ".join(text.replace("\\", "/").replace('"', "'").split())


def render_readme(product: Product, feedback: list[str]) -> str:
    """service/README.md: how to run and test the service."""
    return "\n".join(
        [
            f"# {product.title} service\n",
            "A JSON HTTP API built on the Python standard library only (no dependencies). "
            "It also serves the static page in `web/` at `/`.\n",
            "## Run\n",
            "```sh\npython -m service.app --port 8000\ncurl http://127.0.0.1:8000/health\n```\n",
            "## Test\n",
            "```sh\npython -m unittest discover -s tests -t .\n```\n",
            f"## Endpoints\n\n{endpoint_table()}\n",
            feedback_section(feedback),
        ]
    )
