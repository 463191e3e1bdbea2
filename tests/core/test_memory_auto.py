"""The engine writes memories by itself and gives agents the project's memories."""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectsw import hookimpl
from connectsw.core.engine import Engine
from connectsw.core.memory import open_memory
from connectsw.core.memory_auto import document_type, project_key, requester
from connectsw.core.models import Decision, ExecutionStatus, Request
from connectsw.plugins.manager import get_plugin_manager
from connectsw.plugins.registry import get_registries, reset_registries

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


class SleepyEmbedder:
    """A plugin embedder whose embed() blocks far past the bound (trial 8b, F4)."""

    name = "sleepy-emb"
    dim = 8

    def embed(self, texts: Any) -> Any:
        time.sleep(60)
        raise AssertionError("unreachable")


@contextlib.contextmanager
def embedder_plugin(name: str, embedder: Any) -> Iterator[None]:
    """A plugin called ``name`` that registers ``embedder``, loaded while inside."""
    plugin = types.ModuleType(f"connectsw_{name.replace('-', '_')}")

    @hookimpl
    def register_embedders(register: Callable[[Any], None]) -> None:
        register(embedder)

    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    reset_registries()
    try:
        yield
    finally:
        pm.unregister(name=name)
        reset_registries()


@pytest.fixture
def sleepy_embedder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CONNECTSW_PLUGIN_IMPORT_TIMEOUT", "0.5")
    with embedder_plugin("test-sleepy-emb", SleepyEmbedder()):
        yield


def test_a_plugin_embedder_that_blocks_does_not_hold_the_checkpoint(
    sleepy_embedder: None, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Trial 8b, F4: a plugin embedder whose embed() blocked hung the run before its
    checkpoint (and every resume). Past the bound: a warning naming the plugin, no
    memory for that checkpoint, and the execution reaches its checkpoint."""
    engine.registries = get_registries()
    engine.settings = engine.settings.model_copy(
        update={"memory": engine.settings.memory.model_copy(update={"embedder": "sleepy-emb"})}
    )
    graph = tmp_path / "cp.yaml"
    graph.write_text(
        "name: memt\ntasks:\n"
        "  - {id: prd, agent: product-manager, with: {output: docs/PRD.md, title: Thing}}\n"
        'checkpoints:\n  - {after: [prd], question: "ok?"}\n'
    )
    ex = engine.submit(Request(command="run", args=[str(graph)]), tmp_path / "ws")
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="connectsw.memory"):
        paused = engine.run(ex.id)
    assert paused.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert time.monotonic() - started < 15
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "documents not remembered" in warning
    assert 'plugin "test-sleepy-emb" failed: embedder "sleepy-emb" embed did not return' in warning


def test_memory_add_with_a_blocking_plugin_embedder_is_a_one_line_error(
    sleepy_embedder: None, settings: Any
) -> None:
    from connectsw.core.errors import PluginError
    from connectsw.core.memory import Memory
    from connectsw.core.memory_embedders import get_embedder

    """Trial 8b, F4: `memory add` with a blocking plugin embedder hung; it is the
    plugin's one-line error (exit 3) once the bound has passed."""
    uri = str(settings.data_dir / "memory-sleepy")
    memory = Memory(uri, get_embedder("sleepy-emb"), settings.memory)
    started = time.monotonic()
    with pytest.raises(PluginError, match=r'^plugin "test-sleepy-emb" failed: embedder "sl'):
        memory.remember("p", "decision", "some text")
    assert time.monotonic() - started < 5


class BrokenEmbedder:
    """A plugin embedder that fails in one of the ways trial 8 (F3) tried."""

    name = "broken-emb"
    dim = 8
    how = "raise"

    def embed(self, texts: Any) -> Any:
        import os
        import sys

        import numpy as np

        if self.how == "raise":
            raise RuntimeError("model file missing")
        if self.how == "exit":
            sys.exit(0)
        if self.how == "os-exit":
            os._exit(0)
        if self.how == "none":
            return None
        if self.how == "list":
            return [1.0, 2.0]
        return np.full((len(texts), self.dim), np.nan)


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("raise", "embed raised RuntimeError: model file missing"),
        ("exit", "embed raised SystemExit"),
        ("os-exit", "os._exit(0)"),
        ("none", "embed returned None, not 1 vectors of 8 finite numbers"),
        ("list", "embed returned shape (2,), not 1 vectors of 8 finite numbers"),
        ("nan", "embed returned values that are not finite numbers, not 1 vectors"),
    ],
)
def test_a_plugin_embedder_that_fails_is_its_plugins_one_line_error(
    monkeypatch: pytest.MonkeyPatch, settings: Any, how: str, said: str
) -> None:
    """Trial 8, F3: an embedder that raised, returned None or a list made `memory add`
    exit 70; sys.exit/os._exit in it made `approve` and `memory add` exit 0 silently."""
    from connectsw.core.errors import PluginError
    from connectsw.core.memory import Memory
    from connectsw.core.memory_embedders import get_embedder

    monkeypatch.setattr(BrokenEmbedder, "how", how)
    with embedder_plugin("test-broken-emb", BrokenEmbedder()):
        memory = Memory(
            str(settings.data_dir / "memory-broken"), get_embedder("broken-emb"), settings.memory
        )
        with pytest.raises(PluginError) as info:
            memory.remember("p", "decision", "some text")
        text = str(info.value)
        assert text.startswith('plugin "test-broken-emb" failed: embedder "broken-emb" '), text
        assert said in text and "\n" not in text
