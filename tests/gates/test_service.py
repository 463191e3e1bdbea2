"""server-start and visual on real workspaces: real services on loopback, real headless Chromium."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from connectsw.agents.backend_engineer import render_app
from connectsw.agents.frontend_engineer import APP_JS, STYLE_CSS, render_index
from connectsw.agents.text import Product
from connectsw.core.models import TaskResult, TaskStatus
from connectsw.gates.engine import evaluate_stage
from connectsw.gates.service import ServerStartRule, VisualRule
from connectsw.plugins.registry import get_registries
from tests.gates.workspaces import context, write

PRODUCT = Product("Plant Tracker", "plant-tracker", ("track watering", "list plants"))

SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PAGE = sys.argv[2].encode()
HEALTH = int(sys.argv[3])


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        status, body = (HEALTH, b"ok") if self.path == "/health" else (200, PAGE)
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("listening", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def generated_product(ws: Path) -> None:
    """The workspace the built-in backend and frontend agents write."""
    write(
        ws,
        {
            "service/__init__.py": "",
            "service/app.py": render_app(PRODUCT),
            "web/index.html": render_index(PRODUCT, []),
            "web/app.js": APP_JS,
            "web/style.css": STYLE_CSS,
        },
    )


def group_members(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != b"Z":
            found.append(int(name))
    return found


def test_the_generated_service_starts_answers_and_is_stopped(ws: Path) -> None:
    generated_product(ws)
    result = ServerStartRule().evaluate(context(ws))
    assert result.passed, result.details
    assert "GET /health: HTTP 200" in result.details
    assert "-m service.app --port" in result.details
    port = result.details.split("--port ")[1].split()[0]
    assert not group_members(f"--port {port}")  # stopped afterwards


def test_the_whole_process_group_is_stopped(ws: Path) -> None:
    # The start command leaves a child behind it: it is ended with the service.
    write(ws, {"server.py": SERVER})
    cmd = "sh -c 'sleep 313.25 & exec python3 server.py {port} page 200'"
    result = ServerStartRule().evaluate(context(ws, server_command=cmd))
    assert result.passed, result.details
    assert "process group ended" in result.details
    assert not group_members("sleep 313.25")


def test_a_service_that_crashes_at_start_fails_with_its_output(ws: Path) -> None:
    write(ws, {"server.py": "raise SystemExit('boom: DATABASE_URL is not set')\n"})
    start = time.monotonic()
    result = ServerStartRule().evaluate(context(ws, server_command="python server.py {port}"))
    assert not result.passed
    assert "the command exited" in result.details
    assert "boom: DATABASE_URL is not set" in result.details
    assert "/health" in result.remediation
    assert time.monotonic() - start < 5  # not the whole timeout


def test_an_unhealthy_service_fails_after_the_timeout_and_is_stopped(ws: Path) -> None:
    write(ws, {"server.py": SERVER})
    cmd = "python server.py {port} unhealthy-313 500"
    start = time.monotonic()
    result = ServerStartRule().evaluate(context(ws, server_command=cmd, server_timeout=1.0))
    assert not result.passed
    assert "no 2xx answer (HTTP 500)" in result.details
    assert time.monotonic() - start < 6
    assert not group_members("unhealthy-313")


def test_a_missing_start_command_fails(ws: Path) -> None:
    result = ServerStartRule().evaluate(context(ws, server_command="no-such-server-binary {port}"))
    assert not result.passed
    assert "command not found" in result.details


def test_server_start_takes_the_entrypoint_a_task_reported(ws: Path) -> None:
    main = SERVER.replace("int(sys.argv[1])", "int(sys.argv[sys.argv.index('--port') + 1])")
    write(ws, {"srv/main.py": main.replace("sys.argv[2]", "'x'").replace("sys.argv[3]", "200")})
    ctx = context(ws)
    assert "service" not in ctx.traits
    ctx.results = {
        "backend": TaskResult(
            execution_id="x",
            task_id="backend",
            status=TaskStatus.SUCCEEDED,
            outputs={"entrypoint": "python srv/main.py --port 8000"},
        )
    }
    ctx._traits = None
    assert "service" in ctx.traits
    result = ServerStartRule().evaluate(ctx)
    assert result.passed, result.details
    assert "srv/main.py --port" in result.details and "--port 8000" not in result.details


def test_the_generated_page_passes_in_headless_chromium(ws: Path, tmp_path: Path) -> None:
    generated_product(ws)
    result = VisualRule().evaluate(context(ws, artifact_dir=tmp_path / "evidence"))
    assert result.passed, result.details
    assert "console errors: 0" in result.details
    shot = Path(result.artifacts[0].path)
    assert shot.parent == tmp_path / "evidence" and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.artifacts[0].type == "screenshot"


def test_a_page_with_console_errors_fails(ws: Path, tmp_path: Path) -> None:
    write(
        ws,
        {
            "web/index.html": "<h1>Plants</h1><p>Some text on the page.</p>"
            "<script>console.error('items failed to load'); missingFunction();</script>"
        },
    )
    result = VisualRule().evaluate(context(ws, artifact_dir=tmp_path))
    assert not result.passed
    assert "console errors: 2" in result.details
    assert "items failed to load" in result.details
    assert "missingFunction is not defined" in result.details
    assert "console" in result.remediation
    assert Path(result.artifacts[0].path).is_file()  # the evidence is kept


def test_a_blank_page_fails(ws: Path) -> None:
    write(ws, {"server.py": SERVER, "web/index.html": "<html><body></body></html>"})
    page = "'<html><body style=\"background:#fff\"></body></html>'"
    result = VisualRule().evaluate(
        context(ws, server_command=f"python server.py {{port}} {page} 200")
    )
    assert not result.passed
    assert "the page is blank" in result.remediation
    assert "differing from the background: 0 of" in result.details


@pytest.mark.parametrize(("allowed", "passed"), [(["visual"], True), ([], False)])
def test_without_chromium_the_rule_set_decides(ws: Path, allowed: list[str], passed: bool) -> None:
    write(ws, {"web/index.html": "<h1>hi</h1>"})
    ctx = context(
        ws,
        checkpoint="ui_done",
        chromium=str(ws / "no-chromium-here"),
        rule_sets={"ui_done": {"rules": ["visual"], "not_run_passes": allowed}},
    )
    gate = evaluate_stage(ctx, get_registries())
    assert gate.passed is passed
    (result,) = gate.rules
    assert result.details.startswith("not run: chromium not installed")
    assert not result.ran
    assert gate.score == (1.0 if passed else 0.0)


def test_a_cancelled_gate_ends_the_browser_and_the_service(ws: Path) -> None:
    # The page never finishes loading: the gate is cancelled meanwhile.
    slow = SERVER.replace(
        "def do_GET(self):",
        "def do_GET(self):\n"
        "        if self.path != '/health':\n"
        "            __import__('time').sleep(60)",
    )
    write(ws, {"server.py": slow, "web/index.html": "<h1>x</h1>"})
    ctx = context(ws, server_command="python server.py {port} cancel-me-313 200")
    spawned: list[int] = []
    cancelled: list[float] = []
    ctx.on_spawn = lambda ref: spawned.append(ref.pgid)

    def should_stop() -> str | None:
        # Cancelled once Chromium has been loading the page for a second (however long
        # the service took to start on a loaded machine).
        if not cancelled and len(spawned) == 2:
            cancelled.append(time.monotonic() + 1)
        return "cancelled" if cancelled and time.monotonic() > cancelled[0] else None

    ctx.should_stop = should_stop
    result = VisualRule().evaluate(ctx)
    assert not result.passed
    assert result.details.endswith("stopped: cancelled"), result.details
    assert time.monotonic() - cancelled[0] < 7  # the page alone would take 60 s
    assert len(spawned) == 2  # the service, then Chromium: each recorded for a new owner
    assert not group_members("cancel-me-313")
    # This rule's Chromium (other tests may run theirs at the same time).
    assert not [p for p in group_members("connectsw-chromium-") if spawned[1] in _ids(p)]


def _ids(pid: int) -> tuple[int, ...]:
    """The process group and session of ``pid`` (empty once it has gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[2]), int(fields[3]))
    except (OSError, ValueError, IndexError):
        return ()


def test_an_entrypoint_output_with_broken_quoting_fails_the_rule_readably(ws: Path) -> None:
    """Issue 5, kind 10: an agent's ``entrypoint`` output is split like a command; broken
    quoting is a failed ``server-start`` with evidence, not a crashed rule."""
    ctx = context(ws)
    ctx.results = {
        "a": TaskResult(
            execution_id="x",
            task_id="a",
            status=TaskStatus.SUCCEEDED,
            outputs={"entrypoint": "python3 app.py --name 'x --port 8000"},
        )
    }
    assert "service" in ctx.traits
    result = ServerStartRule().evaluate(ctx)
    assert not result.passed and result.ran
    assert "task a's entrypoint output is not a valid command" in result.details
    assert "quotation" in result.details
