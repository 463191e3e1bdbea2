"""Tests of the product-manager agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.agents.base import TaskContext
from connectsw.agents.product_manager import ProductManagerAgent, ProductManagerInput
from connectsw.core.errors import TaskError
from connectsw.core.models import Request, TaskSpec


def make_ctx(
    workspace: Path,
    text: str = "AI-powered code reviewer",
    feedback: list[str] | None = None,
    inputs: dict | None = None,
    title: str = "",
) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="prd", agent="product-manager", title=title, with_=inputs or {}),
        workspace=workspace,
        request=Request(command="new product", args=[text] if text else []),
        feedback=feedback or [],
    )


def test_writes_prd_with_all_sections(tmp_path: Path) -> None:
    out = ProductManagerAgent().run(make_ctx(tmp_path))
    assert [a.path for a in out.artifacts] == ["docs/PRD.md"]
    assert out.artifacts[0].type == "document"
    prd = (tmp_path / "docs/PRD.md").read_text()
    assert prd.startswith("# AI-Powered Code Reviewer\n")
    for heading in (
        "## Problem statement",
        "## Target users",
        "## Goals",
        "## Features",
        "## User stories",
        "## Functional requirements",
        "### API resources",
        "## Non-goals",
        "## Success metrics",
        "## Feedback incorporated",
    ):
        assert heading in prd
    assert prd.count("\n1. As ") == 1 and "\n3. As " in prd
    for endpoint in ("`/health`", "`/api/info`", "`/api/items`"):
        assert endpoint in prd
    assert out.outputs["product"] == "AI-Powered Code Reviewer"
    assert out.outputs["slug"] == "ai-powered-code-reviewer"
    assert "Review submissions and record findings" in out.outputs["features"]
    assert all(f"- {f}" in prd for f in out.outputs["features"])


def test_is_deterministic(tmp_path: Path) -> None:
    ProductManagerAgent().run(make_ctx(tmp_path / "a"))
    ProductManagerAgent().run(make_ctx(tmp_path / "b"))
    first = (tmp_path / "a/docs/PRD.md").read_bytes()
    assert first == (tmp_path / "b/docs/PRD.md").read_bytes()
    ProductManagerAgent().run(make_ctx(tmp_path / "a"))
    assert (tmp_path / "a/docs/PRD.md").read_bytes() == first


def test_different_requests_give_different_features(tmp_path: Path) -> None:
    a = ProductManagerAgent().run(make_ctx(tmp_path / "a", "AI-powered code reviewer"))
    b = ProductManagerAgent().run(make_ctx(tmp_path / "b", "Team chat with search"))
    assert a.outputs["features"] != b.outputs["features"]
    assert "Hold threaded conversations" in b.outputs["features"]


def test_feedback_is_incorporated(tmp_path: Path) -> None:
    plain = ProductManagerAgent().run(make_ctx(tmp_path / "a"))
    feedback = ["Support GitLab merge requests", "Add a dark\nmode"]
    ProductManagerAgent().run(make_ctx(tmp_path / "b", feedback=feedback))
    assert plain.artifacts
    before = (tmp_path / "a/docs/PRD.md").read_text()
    after = (tmp_path / "b/docs/PRD.md").read_text()
    assert before != after
    section = after.split("## Feedback incorporated", 1)[1]
    assert "- Support GitLab merge requests" in section
    assert "- Add a dark mode" in section


def test_generic_document_at_output_path(tmp_path: Path) -> None:
    ctx = make_ctx(
        tmp_path,
        text="",
        title="write release notes",
        inputs={"output": "docs/RELEASE-NOTES.md", "notes": "First public release."},
        feedback=["Mention the new API"],
    )
    ctx.upstream = {"build": {"summary": "Built the service", "outputs": {}, "artifacts": []}}
    out = ProductManagerAgent().run(ctx)
    assert [a.path for a in out.artifacts] == ["docs/RELEASE-NOTES.md"]
    assert not (tmp_path / "docs/PRD.md").exists()
    text = (tmp_path / "docs/RELEASE-NOTES.md").read_text()
    assert text.startswith("# Write Release Notes\n")
    assert "First public release." in text
    assert "- build: Built the service" in text
    assert "- Mention the new API" in text
    assert out.outputs["path"] == "docs/RELEASE-NOTES.md"


def test_title_and_notes_inputs_shape_the_prd(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, inputs={"title": "ReviewBot", "notes": "Pilot with two teams."})
    out = ProductManagerAgent().run(ctx)
    prd = (tmp_path / "docs/PRD.md").read_text()
    assert prd.startswith("# ReviewBot\n")
    assert "## Notes\n\nPilot with two teams." in prd
    assert out.outputs["slug"] == "reviewbot"


def test_input_model_refuses_unknown_keys(tmp_path: Path) -> None:
    assert ProductManagerAgent.input_model is ProductManagerInput
    with pytest.raises(TaskError, match="unknown key"):
        ProductManagerAgent().run(make_ctx(tmp_path, inputs={"colour": "blue"}))


def test_output_outside_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="outside the workspace"):
        ProductManagerAgent().run(make_ctx(tmp_path / "ws", inputs={"output": "../escape.md"}))
    assert not (tmp_path / "escape.md").exists()


def test_empty_request_fails(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="nothing to write about"):
        ProductManagerAgent().run(make_ctx(tmp_path, text=""))


def test_sections_asked_for_by_preferences_and_feedback(tmp_path: Path) -> None:
    from connectsw.core.models import TaskLearning

    learned = TaskLearning(
        estimated_seconds=1, p90_seconds=1, preferences=["Please add a Security section."]
    )
    ctx = TaskContext(
        execution_id="exec_000000000001",
        task=TaskSpec(id="prd", agent="product-manager", learned=learned),
        workspace=tmp_path,
        request=Request(command="new product", args=["Recipe planner"]),
        feedback=["include an 'Onboarding' section", "and add a security section too"],
    )
    ProductManagerAgent().run(ctx)
    prd = (tmp_path / "docs" / "PRD.md").read_text()
    headings = [ln for ln in prd.splitlines() if ln.startswith("## ")]
    assert headings.count("## Security") == 1  # asked twice, written once
    assert "## Onboarding" in headings and "## Project preferences applied" in headings
    security = prd.split("## Security\n", 1)[1].split("\n## ", 1)[0]
    assert "validated" in security and "Please add a Security section." in security
    # Without preferences or such feedback, no extra section.
    plain = tmp_path / "plain"
    ProductManagerAgent().run(
        TaskContext(
            execution_id="exec_000000000002",
            task=TaskSpec(id="prd", agent="product-manager"),
            workspace=plain,
            request=Request(command="new product", args=["Recipe planner"]),
        )
    )
    text = (plain / "docs" / "PRD.md").read_text()
    assert "## Security" not in text and "preferences applied" not in text
