"""The product manager, architect and QA engineer with a model (real provider, scripted
server): what they send, what they write, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.agents.architect import ArchitectAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.llm import context as llm_context
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.agents.qa_engineer import QAEngineerAgent
from connectsw.core.errors import LLMBadResponse, LLMModelNotFound, TaskError
from connectsw.core.models import Request, TaskSpec

from .model_server import ModelServer, Reply, openai_reply

PRD = "# Recipe Box\n\n## Features\n\n- Save recipes\n- Find a recipe\n"


def ctx(
    workspace: Path, agent: str, feedback: list[str] | None = None, **with_: str
) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="t", agent=agent, title="Do it", **{"with": with_}),
        workspace=workspace,
        request=Request(command="new product", args=["a recipe box for families"]),
        feedback=feedback or [],
        timeout=120,
    )


def test_pm_writes_the_models_prd_from_request_and_feedback(
    tmp_path: Path, model: ModelServer
) -> None:
    model.script(openai_reply(f"```markdown\n{PRD}```"))
    out = ProductManagerAgent().run(ctx(tmp_path, "product-manager", ["Add tags"]))
    assert (tmp_path / "docs/PRD.md").read_text() == PRD
    assert out.outputs == {
        "product": "Recipe Box",
        "slug": "recipe-box",
        "features": ["Save recipes", "Find a recipe"],
    }
    system, user = model.requests[0].body["messages"]
    assert system["role"] == "system" and "product manager" in system["content"]
    assert "a recipe box for families" in user["content"]
    assert "## Feedback to incorporate\n\n- Add tags" in user["content"]
    assert "## Project memory\n\nNone." in user["content"]


def test_pm_reads_the_project_memories_the_engine_gave_it(
    tmp_path: Path, model: ModelServer
) -> None:
    task = ctx(tmp_path, "product-manager")
    task.memories = [
        {"type": "decision", "content": "Families share one box", "relevance": 0.9},
        {"type": "preference", "content": "Always a section on privacy", "relevance": 0.7},
    ]
    assert llm_context.project_memory(task, "q") == [
        "[decision] Families share one box",
        "[preference] Always a section on privacy",
    ]
    model.script(openai_reply(PRD))
    ProductManagerAgent().run(task)
    user = model.requests[0].body["messages"][1]["content"]
    assert "## Project memory\n\n- [decision] Families share one box\n" in user
    assert "- [preference] Always a section on privacy" in user


def test_pm_writes_a_named_document(tmp_path: Path, model: ModelServer) -> None:
    model.script(openai_reply("# Tags\n\nSpec.\n"))
    out = ProductManagerAgent().run(
        ctx(tmp_path, "product-manager", output="docs/features/tags.md", title="Tags")
    )
    assert (tmp_path / "docs/features/tags.md").read_text() == "# Tags\n\nSpec.\n"
    assert out.outputs["path"] == "docs/features/tags.md"
    assert (
        "Write the document `docs/features/tags.md` titled 'Tags'"
        in (model.requests[0].body["messages"][1]["content"])
    )


def test_pm_unknown_model_fails_the_task_in_one_line(tmp_path: Path, model: ModelServer) -> None:
    model.script(Reply(404, {"error": {"message": "model 'm' not found"}}))
    with pytest.raises(LLMModelNotFound) as info:
        ProductManagerAgent().run(ctx(tmp_path, "product-manager"))
    assert "has no model 'm' (HTTP 404)" in str(info.value)
    assert isinstance(info.value, TaskError)
    assert not (tmp_path / "docs").exists()


def test_architect_writes_the_models_files_from_the_prd(tmp_path: Path, model: ModelServer) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/PRD.md").write_text(PRD)
    model.script(
        openai_reply(
            "FILE: docs/architecture.md\n```\n# Arch\n```\n"
            "FILE: docs/adr/0001-x.md\n```\n# ADR 1\n```\n"
            "FILE: docs/adr/0002-y.md\n```\n# ADR 2\n```\n"
        )
    )
    out = ArchitectAgent().run(ctx(tmp_path, "architect"))
    assert out.outputs["adrs"] == ["docs/adr/0001-x.md", "docs/adr/0002-y.md"]
    assert (tmp_path / "docs/adr/0002-y.md").read_text() == "# ADR 2\n"
    user = model.requests[0].body["messages"][1]["content"]
    assert "## docs/PRD.md\n\n````markdown\n# Recipe Box" in user


def test_architect_without_the_architecture_file(tmp_path: Path, model: ModelServer) -> None:
    model.script(openai_reply("FILE: docs/adr/0001-x.md\n```\n# ADR\n```\n"))
    with pytest.raises(LLMBadResponse, match="no FILE: docs/architecture.md block"):
        ArchitectAgent().run(ctx(tmp_path, "architect"))


def test_architect_may_not_write_code(tmp_path: Path, model: ModelServer) -> None:
    model.script(openai_reply("FILE: service/app.py\n```\nx\n```\n"))
    with pytest.raises(LLMBadResponse, match="outside what this agent writes \\(docs/\\)"):
        ArchitectAgent().run(ctx(tmp_path, "architect"))


def write_tests(workspace: Path, passing: bool) -> None:
    (workspace / "tests").mkdir()
    (workspace / "tests/__init__.py").write_text("")
    (workspace / "tests/test_one.py").write_text(
        "import unittest\n\n\nclass One(unittest.TestCase):\n"
        f"    def test_one(self):\n        self.assertTrue({passing})\n"
    )


@pytest.mark.parametrize("passing", [True, False])
def test_qa_report_is_the_models_reading_of_real_output(
    tmp_path: Path, model: ModelServer, passing: bool
) -> None:
    write_tests(tmp_path, passing)
    model.script(openai_reply("## Summary\n\nRead it.\n"))
    agent = QAEngineerAgent()
    if passing:
        out = agent.run(ctx(tmp_path, "qa-engineer"))
        assert out.outputs["tests_passed"] == 1
    else:
        with pytest.raises(TaskError, match="tests failed: 1 failed, 0 passed"):
            agent.run(ctx(tmp_path, "qa-engineer"))
    report = (tmp_path / "docs/QA-report.md").read_text()
    assert report.startswith("# QA report\n")
    assert f"Result: **{'PASSED' if passing else 'FAILED'}**" in report
    assert "## Summary\n\nRead it.\n" in report
    user = model.requests[0].body["messages"][1]["content"]
    assert ("1 passed, 0 failed" if passing else "0 passed, 1 failed") in user
    # The real output went to the model (pytest -q names only what failed).
    assert ("1 passed in <time>" if passing else "FAILED tests/test_one.py::One::test_one") in user
