"""Tests of the frontend-engineer agent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connectsw.agents.backend_engineer import BackendEngineerAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.frontend_engineer import FrontendEngineerAgent
from connectsw.core.models import Request, TaskSpec

FILES = ["web/index.html", "web/app.js", "web/style.css", "tests/__init__.py", "tests/test_web.py"]


def make_ctx(workspace: Path, text: str = "AI-powered code reviewer", feedback=None) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="frontend", agent="frontend-engineer"),
        workspace=workspace,
        request=Request(command="new product", args=[text]),
        feedback=feedback or [],
    )


def unittest_run(workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def test_writes_page_script_and_tests(tmp_path: Path) -> None:
    out = FrontendEngineerAgent().run(make_ctx(tmp_path))
    assert [a.path for a in out.artifacts] == FILES
    types = {a.path: a.type for a in out.artifacts}
    assert types["web/index.html"] == "page"
    assert types["web/app.js"] == "code"
    assert types["tests/test_web.py"] == "test"
    page = (tmp_path / "web/index.html").read_text()
    assert "<title>AI-Powered Code Reviewer</title>" in page
    assert 'src="app.js"' in page
    script = (tmp_path / "web/app.js").read_text()
    assert "fetch(url" in script
    assert '"/api/info"' in script and '"/api/items"' in script
    assert "innerHTML" not in script


def test_title_is_html_escaped(tmp_path: Path) -> None:
    FrontendEngineerAgent().run(make_ctx(tmp_path, text="<script>alert(1)</script> board"))
    page = (tmp_path / "web/index.html").read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_deterministic_and_feedback(tmp_path: Path) -> None:
    FrontendEngineerAgent().run(make_ctx(tmp_path / "a"))
    FrontendEngineerAgent().run(make_ctx(tmp_path / "b"))
    for path in FILES:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    FrontendEngineerAgent().run(make_ctx(tmp_path / "a", feedback=["Bigger buttons --now"]))
    page = (tmp_path / "a/web/index.html").read_text()
    assert "Feedback incorporated" in page
    assert "Bigger buttons - -now" in page  # "--" is not allowed inside an HTML comment
    assert page.count("<!--") == 1 and page.count("-->") == 1


@pytest.mark.slow
def test_generated_web_tests_pass_with_service(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path))
    FrontendEngineerAgent().run(make_ctx(tmp_path, text='The "Best" app'))
    proc = unittest_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"test_script_endpoints_exist_in_service \(.*\) \.\.\. ok", proc.stderr)


@pytest.mark.slow
def test_generated_web_tests_catch_missing_endpoint(tmp_path: Path) -> None:
    BackendEngineerAgent().run(make_ctx(tmp_path))
    FrontendEngineerAgent().run(make_ctx(tmp_path))
    app = tmp_path / "service/app.py"
    app.write_text(app.read_text().replace('"/api/info"', '"/api/about"'))
    proc = unittest_run(tmp_path)
    assert proc.returncode != 0
    assert "app.js calls /api/info, which the service lacks" in proc.stderr
