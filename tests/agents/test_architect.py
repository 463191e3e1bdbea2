"""Tests of the architect agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.agents.architect import ADR_PATH, ArchitectAgent
from connectsw.agents.base import TaskContext
from connectsw.agents.product_manager import ProductManagerAgent
from connectsw.core.errors import TaskError
from connectsw.core.models import Request, TaskSpec


def make_ctx(workspace: Path, text: str = "AI-powered code reviewer", feedback=None) -> TaskContext:
    return TaskContext(
        execution_id="exec_test",
        task=TaskSpec(id="arch", agent="architect"),
        workspace=workspace,
        request=Request(command="new product", args=[text] if text else []),
        feedback=feedback or [],
    )


def test_writes_architecture_and_adr(tmp_path: Path) -> None:
    ProductManagerAgent().run(make_ctx(tmp_path))
    out = ArchitectAgent().run(make_ctx(tmp_path))
    assert [a.path for a in out.artifacts] == ["docs/architecture.md", ADR_PATH]
    assert ADR_PATH.startswith("docs/adr/0001-") and ADR_PATH.endswith(".md")
    assert all(a.type == "document" for a in out.artifacts)
    arch = (tmp_path / "docs/architecture.md").read_text()
    assert arch.startswith("# Architecture: AI-Powered Code Reviewer\n")
    for part in ("`service/`", "`web/`", "`tests/`", "## Data model", "## How to run"):
        assert part in arch
    assert out.outputs["endpoints"] == [
        "GET /health",
        "GET /api/info",
        "GET /api/items",
        "POST /api/items",
    ]
    adr = (tmp_path / ADR_PATH).read_text()
    for heading in ("## Context", "## Decision", "## Consequences"):
        assert heading in adr
    assert "http.server" in adr and "no third-party dependencies" in adr


def test_reads_product_from_prd(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/PRD.md").write_text("# Widget Hub\n\n## Features\n\n- Spin widgets\n")
    ArchitectAgent().run(make_ctx(tmp_path, text="something else"))
    arch = (tmp_path / "docs/architecture.md").read_text()
    assert "# Architecture: Widget Hub" in arch
    assert "- Spin widgets" in arch


def test_without_prd_uses_request(tmp_path: Path) -> None:
    ArchitectAgent().run(make_ctx(tmp_path, text="team chat"))
    assert "# Architecture: Team Chat" in (tmp_path / "docs/architecture.md").read_text()


def test_without_prd_or_request_fails(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no product described"):
        ArchitectAgent().run(make_ctx(tmp_path, text=""))


def test_deterministic_and_feedback(tmp_path: Path) -> None:
    ArchitectAgent().run(make_ctx(tmp_path))
    first = (tmp_path / "docs/architecture.md").read_bytes()
    ArchitectAgent().run(make_ctx(tmp_path))
    assert (tmp_path / "docs/architecture.md").read_bytes() == first
    ArchitectAgent().run(make_ctx(tmp_path, feedback=["Use PostgreSQL later"]))
    arch = (tmp_path / "docs/architecture.md").read_text()
    assert arch != first.decode()
    assert "- Use PostgreSQL later" in arch.split("## Feedback incorporated", 1)[1]
    assert "- Use PostgreSQL later" in (tmp_path / ADR_PATH).read_text()
