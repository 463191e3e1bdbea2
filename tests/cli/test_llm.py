"""``connectsw new product`` with a model: the OpenAI-compatible provider against a
scripted chat-completions server on loopback (issue 9, "Done when" #1).

The server answers each agent from its system prompt: a PRD, an architecture with
an ADR, a service whose first version fails its own test (the backend engineer
gets the failure back and the second version passes), a web page, a QA report.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..agents.llm.model_server import ModelServer, Reply, Seen, openai_reply
from .conftest import Cli

MODEL = "scripted-model"
PRICES = {MODEL: {"input": 1000.0, "output": 2000.0}}  # dollars per million tokens

PRD = """# Tiny Adder

## Problem statement

People add numbers by hand.

## Features

- Add two numbers over HTTP
- Show the sum on a page

## Feedback incorporated

No feedback received yet.
"""

ARCHITECTURE = """Here is the design.

FILE: docs/architecture.md
````markdown
# Architecture: Tiny Adder

`service/app.py` has `add(a, b)`.

```sh
python -m unittest discover -s tests -t .
```
````

FILE: docs/adr/0001-standard-library.md
```markdown
# ADR 0001: Standard library only

Status: accepted
```
"""

#: service/app.py as the model writes it: ``add`` (with ``{op}``) and a small HTTP
#: service on --port that answers /health and serves web/ at /, so that the
#: implementation checkpoint's real rule set (build, server-start, smoke tests,
#: visual in headless Chromium) passes on what the model wrote.
APP = """import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
TYPES = {{".html": "text/html", ".js": "text/javascript"}}


def add(a: int, b: int) -> int:
    return a {op} b


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(200, b"ok", "text/plain")
            return
        name = "index.html" if self.path == "/" else self.path.lstrip("/")
        file = WEB / name
        if "/" in name or not file.is_file():
            self.answer(404, b"", "text/plain")
            return
        self.answer(200, file.read_bytes(), TYPES.get(file.suffix, "text/plain"))

    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    port = parser.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
"""

SERVICE = f"""FILE: service/__init__.py
```python
```

FILE: service/app.py
```python
{APP.format(op="-")}```

FILE: tests/__init__.py
```python
```

FILE: tests/test_service.py
```python
import unittest

from service.app import add


class AddTest(unittest.TestCase):
    def test_add_smoke(self) -> None:
        self.assertEqual(add(2, 3), 5)
```
"""

FIXED = f"""The subtraction was the bug.

FILE: service/app.py
```python
{APP.format(op="+")}```
"""

PAGE = """FILE: web/index.html
```html
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Tiny Adder</title><script src="app.js" defer></script></head>
<body><h1>Tiny Adder</h1><p id="sum">2 + 3 = ?</p></body>
</html>
```

FILE: web/app.js
```javascript
document.getElementById("sum").textContent = "2 + 3 = 5";
```

FILE: tests/__init__.py
```python
```

FILE: tests/test_web.py
```python
import unittest
from pathlib import Path


class PageTest(unittest.TestCase):
    def test_page_loads_its_script(self) -> None:
        self.assertIn('src="app.js"', Path("web/index.html").read_text())
```
"""

QA = "## Summary\n\nThe scripted model read the test output.\n"

#: agent -> (words of its system prompt, tokens in, tokens out)
AGENTS = {
    "prd": ("product manager", 100, 50),
    "architecture": ("software architect", 200, 80),
    "backend": ("backend engineer", 300, 120),
    "frontend": ("frontend engineer", 150, 60),
    "qa": ("QA engineer", 90, 30),
}


def agent_of(seen: Seen) -> str:
    system = seen.body["messages"][0]["content"]
    return next(task for task, (words, _i, _o) in AGENTS.items() if words in system)


def respond(seen: Seen) -> Reply:
    task = agent_of(seen)
    _words, t_in, t_out = AGENTS[task]
    if task == "backend":
        # Two messages: the first ask; four: the test output came back.
        fixing = len(seen.body["messages"]) > 2
        return openai_reply(FIXED if fixing else SERVICE, t_in, t_out)
    text = {"prd": PRD, "architecture": ARCHITECTURE, "frontend": PAGE, "qa": QA}[task]
    return openai_reply(text, t_in, t_out)


@pytest.fixture
def model() -> Iterator[ModelServer]:
    server = ModelServer(responder=respond)
    with server.running():
        yield server


def with_model(cli: Cli, server: ModelServer) -> Cli:
    cli.env.update(
        CONNECTSW_LLM__PROVIDER="openai",
        CONNECTSW_LLM__MODEL=MODEL,
        CONNECTSW_LLM__OPENAI__BASE_URL=f"{server.url}/v1",
        CONNECTSW_LLM__OPENAI__API_KEY_ENV="ADDER_TEST_KEY",
        CONNECTSW_LLM__PRICES=json.dumps(PRICES),
        ADDER_TEST_KEY="sk-adder-SECRET",
    )
    return cli


def cost(t_in: int, t_out: int) -> float:
    return (t_in * PRICES[MODEL]["input"] + t_out * PRICES[MODEL]["output"]) / 1e6


def test_new_product_with_a_model_writes_what_it_returned_and_counts_tokens(
    cli: Cli, model: ModelServer, tmp_path: Path
) -> None:
    ws = tmp_path / "adder"
    res = with_model(cli, model)("new", "product", "a tiny adder", "--yes", "-w", ws, ok=True)
    assert "sk-adder-SECRET" not in res.stdout + res.stderr
    eid = res.execution_id

    # The documents and code are what the scripted model returned.
    assert (ws / "docs/PRD.md").read_text() == PRD
    architecture = (ws / "docs/architecture.md").read_text()
    assert architecture.startswith("# Architecture: Tiny Adder") and "```sh" in architecture
    assert (ws / "docs/adr/0001-standard-library.md").is_file()
    assert (ws / "service/app.py").read_text() == APP.format(op="+")
    assert (ws / "web/index.html").is_file()
    report = (ws / "docs/QA-report.md").read_text()
    assert "Result: **PASSED**" in report and "The scripted model read the test output." in report
    # The generated tests pass as committed.
    run = subprocess.run(
        ["python3", "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr

    # The test-fix loop: the second backend call carried the failing test's output.
    backend = [s for s in model.requests if agent_of(s) == "backend"]
    assert len(backend) == 2
    fix = backend[1].body["messages"]
    assert [m["role"] for m in fix] == ["system", "user", "assistant", "user"]
    assert "test_add_smoke" in fix[3]["content"] and "AssertionError" in fix[3]["content"]
    assert fix[2]["content"] == SERVICE
    assert all(s.headers["Authorization"] == "Bearer sk-adder-SECRET" for s in model.requests)
    assert all(s.body["model"] == MODEL for s in model.requests)
    # The PM was given the request; the architect the PRD.
    assert (
        "a tiny adder"
        in [s for s in model.requests if agent_of(s) == "prd"][0].body["messages"][1]["content"]
    )
    arch_brief = [s for s in model.requests if agent_of(s) == "architecture"][0]
    assert "# Tiny Adder" in arch_brief.body["messages"][1]["content"]

    view = cli.view(eid)
    assert view["status"] == "completed", view
    # The implementation checkpoint's rule set ran for real on what the model wrote.
    gate = view["gate"]
    assert gate["passed"] and {r["rule"]: r["ran"] and r["passed"] for r in gate["rules"]} == {
        "tests-pass": True,
        "build": True,
        "server-start": True,
        "smoke-tests": True,
        "visual": True,
    }, gate
    usage = view["usage"]
    expected = {
        task: {
            "calls": 2 if task == "backend" else 1,
            "tokensIn": t_in * (2 if task == "backend" else 1),
            "tokensOut": t_out * (2 if task == "backend" else 1),
            "cost": pytest.approx(cost(t_in, t_out) * (2 if task == "backend" else 1)),
        }
        for task, (_w, t_in, t_out) in AGENTS.items()
    }
    assert usage["tasks"] == expected
    assert usage["calls"] == 6
    assert usage["tokensIn"] == sum(e["tokensIn"] for e in expected.values())
    assert usage["tokensOut"] == sum(e["tokensOut"] for e in expected.values())
    assert usage["cost"] == pytest.approx(
        sum(cost(i, o) for _w, i, o in AGENTS.values()) + cost(300, 120)
    )

    text = cli("status", eid, "--no-resume", ok=True).stdout
    assert "tokens in" in text
    assert (
        f"Model use: 6 calls, {usage['tokensIn']} tokens in, {usage['tokensOut']} tokens out, "
        f"${usage['cost']:.4f}"
    ) in text


def test_without_a_provider_the_templates_are_written_and_no_usage(
    cli: Cli, tmp_path: Path
) -> None:
    ws = tmp_path / "plain"
    res = cli("new", "product", "a tiny adder", "--yes", "-w", ws, ok=True)
    view = cli.view(res.execution_id)
    assert view["status"] == "completed"
    assert view["usage"] == {"calls": 0, "tokensIn": 0, "tokensOut": 0, "cost": 0.0, "tasks": {}}
    assert "Model use" not in cli("status", res.execution_id, "--no-resume", ok=True).stdout


def test_a_refused_key_fails_the_first_task_in_one_line(
    cli: Cli, model: ModelServer, tmp_path: Path
) -> None:
    model.responder = lambda seen: Reply(
        401, {"error": {"message": "Incorrect API key sk-adder-SECRET"}}
    )
    res = with_model(cli, model)("new", "product", "a tiny adder", "--yes", "-w", tmp_path / "w")
    assert res.returncode == 1, res
    assert "sk-adder-SECRET" not in res.stdout + res.stderr
    view = cli.view(res.execution_id)
    assert view["tasks"]["prd"] == "failed"
    events = cli.events(res.execution_id)
    errors = [e["message"] for e in events if e["kind"] == "task.failed"]
    assert errors == [
        f"openai provider at 127.0.0.1:{model.url.rsplit(':', 1)[1]} refused the API key"
        " (HTTP 401); check the environment variable ADDER_TEST_KEY"
    ]


def test_a_secret_in_the_base_url_query_is_in_no_message_and_the_query_is_kept(
    cli: Cli, model: ModelServer, tmp_path: Path
) -> None:
    """Trial 6 (issue 5, kind 8): ``?key=SECRET`` in ``llm.openai.base_url`` was shown
    in the task's error, its event and ``status --json``, and the path was appended
    after the query (``POST /v1?key=.../chat/completions``)."""
    model.responder = lambda seen: Reply(
        400, {"error": {"message": f"bad request: POST {seen.path}?{seen.query}"}}
    )
    with_model(cli, model)
    cli.env.update(
        CONNECTSW_LLM__RETRIES="0",
        CONNECTSW_LLM__OPENAI__BASE_URL=f"{model.url}/v1?api-version=7&key=Zq9SECRETQ",
    )
    res = cli("new", "product", "a tiny adder", "--yes", "-w", tmp_path / "w")
    assert res.returncode == 1, res
    assert {(s.path, s.query) for s in model.requests} == {
        ("/v1/chat/completions", "api-version=7&key=Zq9SECRETQ")
    }
    shown = res.stdout + res.stderr
    view = cli("status", res.execution_id, "--json", "--no-resume").stdout
    assert "Zq9SECRETQ" not in view and "key=***" in view, view
    events = cli.events(res.execution_id)
    errors = {e["message"] for e in events if e["kind"] == "task.failed"}
    assert errors == {
        f"openai provider at 127.0.0.1:{model.url.rsplit(':', 1)[1]} refused the request"
        " (HTTP 400): bad request: POST /v1/chat/completions?api-version=7&key=***"
    }
    assert "Zq9SECRETQ" not in shown + view + json.dumps(events)


def test_a_password_in_the_base_url_is_refused_before_anything_runs(
    cli: Cli, model: ModelServer, tmp_path: Path
) -> None:
    """Trial 6 (issue 5, kind 10): ``http://user:pw@host/v1`` failed each task with
    aiohttp's raw ``ValueError``; it is refused in one line naming the setting."""
    with_model(cli, model)
    cli.env["CONNECTSW_LLM__OPENAI__BASE_URL"] = f"http://user:Pw9SECRET@{model.url[7:]}/v1"
    res = cli("new", "product", "a tiny adder", "--yes", "-w", tmp_path / "w")
    assert res.returncode == 2, res
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res
    assert "llm.openai.base_url" in res.stderr and "Pw9SECRET" not in res.stderr
    assert model.requests == []
