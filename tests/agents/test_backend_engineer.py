"""Tests of the backend-engineer agent, including the generated service over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectsw.agents.backend_engineer import BackendEngineerAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.core.errors import TaskError
from connectsw.core.models import Request, TaskSpec

FILES = [
    "service/__init__.py",
    "service/app.py",
    "service/README.md",
    "tests/__init__.py",
    "tests/test_service.py",
]


def make_ctx(workspace: Path, text: str = "AI-powered code reviewer", feedback=None) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="backend", agent="backend-engineer"),
        workspace=workspace,
        request=Request(command="new product", args=[text]),
        feedback=feedback or [],
        timeout=120,
    )


def unittest_run(workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_writes_service_and_tests(tmp_path: Path) -> None:
    out = BackendEngineerAgent().run(make_ctx(tmp_path))
    assert [a.path for a in out.artifacts] == FILES
    types = {a.path: a.type for a in out.artifacts}
    assert types["service/app.py"] == "code" and types["tests/test_service.py"] == "test"
    for path in FILES:
        assert (tmp_path / path).is_file()
    app = (tmp_path / "service/app.py").read_text()
    assert "def make_server(" in app and 'if __name__ == "__main__":' in app
    assert "PRODUCT = 'AI-Powered Code Reviewer'" in app
    tests = (tmp_path / "tests/test_service.py").read_text()
    assert "import unittest" in tests and "pytest" not in tests
    # Standard library only: every import in the generated code must be stdlib.
    for line in (app + tests).splitlines():
        if line.startswith(("import ", "from ")):
            module = line.split()[1].split(".")[0]
            assert module in sys.stdlib_module_names or module in {"service", "__future__"}


def test_deterministic_and_feedback(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path / "a"))
    BackendEngineerAgent().run(make_ctx(tmp_path / "b"))
    for path in FILES:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    BackendEngineerAgent().run(make_ctx(tmp_path / "a", feedback=["Document the port flag"]))
    readme = (tmp_path / "a/service/README.md").read_text()
    assert "- Document the port flag" in readme.split("## Feedback incorporated", 1)[1]


def test_uses_product_from_prd(tmp_path: Path) -> None:
    ProductManagerAgent().run(make_ctx(tmp_path, text="Team chat"))
    BackendEngineerAgent().run(make_ctx(tmp_path, text="ignored once the PRD exists"))
    assert "PRODUCT = 'Team Chat'" in (tmp_path / "service/app.py").read_text()


@pytest.mark.slow
def test_generated_tests_pass_even_for_awkward_names(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path, text='Bob\'s "quoted" \\ reviewer'))
    proc = unittest_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stderr
    assert not list(tmp_path.rglob("__pycache__"))


@pytest.mark.slow
def test_generated_tests_catch_a_broken_service(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path))
    app = tmp_path / "service/app.py"
    app.write_text(app.read_text().replace('{"status": "ok"}', '{"status": "down"}', 1))
    proc = unittest_run(tmp_path)
    assert proc.returncode != 0
    assert "test_smoke_health" in proc.stderr


@pytest.mark.slow
def test_service_serves_http(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path))
    (tmp_path / "web").mkdir()
    (tmp_path / "web/index.html").write_text("<h1>hello page</h1>")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.app", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    assert resp.status == 200
                    assert json.loads(resp.read()) == {"status": "ok"}
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.1)
        with urllib.request.urlopen(base + "/", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            assert b"hello page" in resp.read()
        req = urllib.request.Request(base + "/api/items", data=b'{"name": "x"}', method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 201
            assert json.loads(resp.read()) == {"id": 1, "name": "x", "note": ""}
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(
                urllib.request.Request(base + "/api/items", data=b"nope", method="POST"),
                timeout=5,
            )
        assert err.value.code == 400
        assert json.loads(err.value.read()) == {"error": "body must be valid JSON"}
        err.value.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


# -- a change it cannot make (issue 5, fault 11) ------------------------------------------------


def change_ctx(workspace: Path, **with_: str) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="implement", agent="backend-engineer", with_=with_),
        workspace=workspace,
        request=Request(command="new feature", args=["export reviews as CSV"]),
    )


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        (
            {"feature": "export reviews as CSV"},
            "backend-engineer cannot implement 'export reviews as CSV' without a model: ",
        ),
        (
            {"bug": "items list is empty after restart"},
            "backend-engineer cannot fix 'items list is empty after restart' without a model: ",
        ),
    ],
)
def test_a_requested_change_without_a_model_fails_and_changes_nothing(
    tmp_path: Path, with_: dict[str, str], message: str
) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service/app.py").write_text("# the user's own service\n")
    with pytest.raises(TaskError) as info:
        BackendEngineerAgent().run(change_ctx(tmp_path, **with_))
    text = str(info.value)
    assert text.startswith(message)
    assert "no LLM provider" in text and text.endswith("nothing was changed")
    assert "\n" not in text
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "service",
        "service/app.py",
    ]
    assert (tmp_path / "service/app.py").read_text() == "# the user's own service\n"


def test_input_is_validated(tmp_path: Path) -> None:
    assert BackendEngineerAgent.input_model is not None
    with pytest.raises(ValidationError):
        BackendEngineerAgent.input_model.model_validate({"featur": "x"})
    with pytest.raises(TaskError, match="invalid input"):
        BackendEngineerAgent().run(change_ctx(tmp_path, colour="red"))
