"""Tests of the QA-engineer agent, and of the whole PM -> QA chain in one workspace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectsw.agents import qa_engineer
from connectsw.agents.architect import ADR_PATH, ArchitectAgent
from connectsw.agents.backend_engineer import BackendEngineerAgent
from connectsw.agents.base import Agent, TaskContext
from connectsw.agents.frontend_engineer import FrontendEngineerAgent
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.agents.qa_engineer import QAEngineerAgent, count_results
from connectsw.core.errors import TaskError, TaskTimeout
from connectsw.core.models import Request, TaskSpec

CHAIN: list[Agent] = [
    ProductManagerAgent(),
    ArchitectAgent(),
    BackendEngineerAgent(),
    FrontendEngineerAgent(),
]
UNITTEST = ["-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"]


def make_ctx(
    workspace: Path, agent: str = "qa-engineer", feedback=None, timeout: float | None = 120
) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id=agent, agent=agent),
        workspace=workspace,
        request=Request(command="new product", args=["AI-powered code reviewer"]),
        feedback=feedback or [],
        timeout=timeout,
    )


def build(workspace: Path) -> list[str]:
    """Run the four building agents; the paths of every artifact they returned."""
    paths = []
    for agent in CHAIN:
        paths += [a.path for a in agent.run(make_ctx(workspace, agent.name)).artifacts]
    return paths


@pytest.mark.slow
def test_full_chain_builds_a_working_product(tmp_path: Path) -> None:
    paths = build(tmp_path)
    expected = {
        "docs/PRD.md",
        "docs/architecture.md",
        ADR_PATH,
        "service/app.py",
        "tests/test_service.py",
        "web/index.html",
        "web/app.js",
        "tests/test_web.py",
    }
    assert expected <= set(paths)
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == set(paths)  # every file written is listed as an artifact

    proc = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stderr

    out = QAEngineerAgent().run(make_ctx(tmp_path, feedback=["Cover the 400 path"]))
    assert out.outputs["tests_failed"] == 0
    assert out.outputs["tests_passed"] >= 10
    assert "pytest" in out.outputs["command"]
    assert [a.path for a in out.artifacts] == ["docs/QA-report.md"]
    report = (tmp_path / "docs/QA-report.md").read_text()
    assert "Result: **PASSED**" in report
    assert f"| {out.outputs['tests_passed']} | 0 |" in report
    assert "- Cover the 400 path" in report
    # Running the tests leaves nothing behind that is not an artifact.
    assert not list(tmp_path.rglob("__pycache__")) and not (tmp_path / ".pytest_cache").exists()

    QAEngineerAgent().run(make_ctx(tmp_path, feedback=["Cover the 400 path"]))
    assert (tmp_path / "docs/QA-report.md").read_text() == report  # deterministic


@pytest.mark.slow
def test_unittest_fallback_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(tmp_path)
    monkeypatch.setattr(qa_engineer, "build_command", lambda: UNITTEST)
    out = QAEngineerAgent().run(make_ctx(tmp_path))
    assert out.outputs["command"] == "python " + " ".join(UNITTEST)
    assert out.outputs["tests_failed"] == 0
    assert out.outputs["tests_passed"] >= 10


@pytest.mark.slow
@pytest.mark.parametrize("use_unittest", [False, True])
def test_failing_tests_raise_task_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_unittest: bool
) -> None:
    build(tmp_path)
    if use_unittest:
        monkeypatch.setattr(qa_engineer, "build_command", lambda: UNITTEST)
    test = tmp_path / "tests/test_service.py"
    test.write_text(test.read_text().replace('(200, {"status": "ok"})', '(200, {"status": "no"})'))
    with pytest.raises(TaskError, match=r"tests failed: 1 failed, \d+ passed") as err:
        QAEngineerAgent().run(make_ctx(tmp_path))
    assert "\n" not in str(err.value)
    report = (tmp_path / "docs/QA-report.md").read_text()
    assert "Result: **FAILED**" in report
    assert "test_smoke_health" in report


def test_missing_tests_dir_fails(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no tests/ directory"):
        QAEngineerAgent().run(make_ctx(tmp_path))


@pytest.mark.slow
def test_no_tests_collected_fails(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/__init__.py").write_text("")
    with pytest.raises(TaskError, match="tests failed|no tests ran"):
        QAEngineerAgent().run(make_ctx(tmp_path))


@pytest.mark.slow
def test_timeout_is_passed_to_the_subprocess(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/__init__.py").write_text("")
    (tmp_path / "tests/test_slow.py").write_text(
        "import time\n\ndef test_slow():\n    time.sleep(30)\n"
    )
    with pytest.raises(TaskTimeout, match="did not finish within 2s"):
        QAEngineerAgent().run(make_ctx(tmp_path, timeout=2))


def test_count_results_pytest() -> None:
    assert count_results("....\n4 passed in <time>\n", pytest=True) == (4, 0)
    out = "F..E\n= 1 failed, 2 passed, 1 error in <time> =\n"
    assert count_results(out, pytest=True) == (2, 2)
    assert count_results("no tests ran in <time>\n", pytest=True) == (0, 0)


def test_count_results_unittest() -> None:
    assert count_results("...\nRan 3 tests in <time>\n\nOK\n", pytest=False) == (3, 0)
    out = "Ran 5 tests in <time>\n\nFAILED (failures=1, errors=1, skipped=1)\n"
    assert count_results(out, pytest=False) == (2, 2)


def test_scrub_removes_durations() -> None:
    assert qa_engineer.scrub("3 passed in 0.12s") == "3 passed in <time>"
    assert qa_engineer.scrub("Ran 3 tests in 0.004s") == "Ran 3 tests in <time>"


@pytest.mark.slow
def test_timeout_ends_what_the_tests_started(tmp_path: Path) -> None:
    # Issue 5, fault 1: the timeout killed the test runner, not the processes it started.
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/__init__.py").write_text("")
    (tmp_path / "tests/test_spawn.py").write_text(
        "import subprocess, time\n\n"
        "def test_spawn():\n"
        "    subprocess.Popen(['sh', '-c', 'sleep 2; touch late.txt'])\n"
        "    time.sleep(30)\n"
    )
    with pytest.raises(TaskTimeout, match="did not finish within 1s"):
        QAEngineerAgent().run(make_ctx(tmp_path, timeout=1))
    time.sleep(2.5)
    assert not (tmp_path / "late.txt").exists()


def test_stop_request_and_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/__init__.py").write_text("")
    (tmp_path / "tests/test_env.py").write_text(
        "import os\n\ndef test_env():\n    assert 'PGPASSWORD' not in os.environ\n"
    )
    assert QAEngineerAgent().run(make_ctx(tmp_path)).outputs["tests_passed"] == 1
    ctx = make_ctx(tmp_path)
    ctx.should_stop = lambda: "cancelled"  # type: ignore[attr-defined]
    with pytest.raises(TaskError, match="^tests stopped: cancelled$"):
        QAEngineerAgent().run(ctx)
