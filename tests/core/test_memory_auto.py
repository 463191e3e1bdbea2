"""The engine writes memories by itself and gives agents the project's memories."""

from __future__ import annotations

from pathlib import Path

from connectsw.core.engine import Engine
from connectsw.core.memory import open_memory
from connectsw.core.memory_auto import document_type, project_key, requester
from connectsw.core.models import Decision, ExecutionStatus, Request

EARLIER = "We store recipes in PostgreSQL because people search them by ingredient."


def test_documents_feedback_and_earlier_decisions_flow_through_memory(
    engine: Engine, tmp_path: Path
) -> None:
    ex = engine.submit(Request(command="new product", args=["Recipe planner"]), tmp_path / "ws")
    memory = open_memory(engine.settings)
    project = project_key(ex)
    assert project == ex.plan.name  # local mode: the plan's name
    earlier = memory.remember(project, "decision", EARLIER, "notes/db.md", "ann")

    paused = engine.run(ex.id)
    assert paused.status is ExecutionStatus.AWAITING_CHECKPOINT
    prd = [r for r in memory.records(project) if r.source == "docs/PRD.md"]
    assert len(prd) == 1 and prd[0].type == "decision" and prd[0].content.startswith("# ")
    # The PRD (product manager reads memory) already cites the earlier decision.
    assert "notes/db.md" in (tmp_path / "ws" / "docs" / "PRD.md").read_text()

    engine.decide(ex.id, Decision.REQUEST_CHANGES, "Add a shopping list export", by="bob")
    pref = [r for r in memory.records(project) if r.type == "preference"]
    assert [(p.content, p.user) for p in pref] == [("Add a shopping list export", requester(ex))]
    engine.run(ex.id)
    prds = [r for r in memory.records(project, superseded=True) if r.source == "docs/PRD.md"]
    assert len(prds) == 2 and sum(r.superseded_by is None for r in prds) == 1  # superseded

    engine.decide(ex.id, Decision.APPROVE)
    engine.run(ex.id)
    architecture = (tmp_path / "ws" / "docs" / "architecture.md").read_text()
    section = architecture.split("## From project memory", 1)[1]
    assert EARLIER[:60] in section and "(source: `notes/db.md`)" in section
    kinds = {r.source: r.type for r in memory.records(project)}
    assert kinds["docs/architecture.md"] == "architecture"
    assert any(s.startswith("docs/adr/") and t == "decision" for s, t in kinds.items())
    assert memory.get(earlier.id).superseded_by is None


def test_without_memory_no_database_is_opened(engine: Engine, tmp_path: Path) -> None:
    ex = engine.submit(Request(command="new product", args=["Team chat"]), tmp_path / "ws")
    settings = engine.settings.model_copy(
        update={"memory": engine.settings.memory.model_copy(update={"auto": False})}
    )
    engine.settings = settings
    engine.run(ex.id)
    assert not (settings.data_dir / "memory").exists()
    assert "From project memory" not in (tmp_path / "ws" / "docs" / "PRD.md").read_text()


def test_document_types() -> None:
    assert document_type("docs/adr/0001-use-x.md") == "decision"
    assert document_type("docs/PRD.md") == "decision"
    assert document_type("docs/architecture.md") == "architecture"
    assert document_type("service/app.py") is None
