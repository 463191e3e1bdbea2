"""Project memory's rules (core/memory.py), on both built-in embedders (one contract)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.errors import InvalidInput, NotFound
from connectsw.core.memory import Memory, open_memory


@pytest.fixture(params=["hashing", "wordllama", "minilm"])
def memory(request: pytest.FixtureRequest) -> Memory:
    return open_memory(load_settings(memory={"embedder": request.param}))


def test_a_memory_is_stored_with_its_fields_and_found(memory: Memory) -> None:
    rec = memory.remember(
        "shop", "decision", "We use PostgreSQL because we need JSONB.", "docs/adr/1.md", "ann"
    )
    assert (rec.project, rec.type, rec.source, rec.user, rec.superseded_by) == (
        "shop", "decision", "docs/adr/1.md", "ann", None
    )  # fmt: skip
    assert rec.created_at == rec.updated_at and rec.created_at.tzinfo is not None
    memory.remember("shop", "preference", "Dark mode on every screen.", user="bob")
    hits = memory.search("shop", "PostgreSQL JSONB")  # memory.search = vector: cosine
    assert hits[0].id == rec.id and 0 < hits[0].relevance < 1
    assert hits[0].relevance > hits[1].relevance
    assert set(hits[0].to_api()) == {"id", "type", "content", "relevance", "source", "timestamp"}
    assert all(0 <= h.relevance <= 1 for h in hits)
    assert memory.search("shop", rec.content)[0].relevance == 1.0  # the same text
    memory.settings = memory.settings.model_copy(update={"search": "hybrid"})
    hits = memory.search("shop", "PostgreSQL JSONB")
    assert hits[0].id == rec.id and hits[0].relevance == 1.0  # first in both searches


def test_search_is_limited_to_the_project(memory: Memory) -> None:
    memory.remember("shop", "decision", "We use PostgreSQL.")
    memory.remember("blog", "decision", "We use SQLite.")
    assert [h.content for h in memory.search("blog", "which database")] == ["We use SQLite."]
    assert memory.search("nothing-here", "database") == []


def test_updating_a_decision_from_the_same_source_supersedes_it(memory: Memory) -> None:
    old = memory.remember("shop", "decision", "Use MySQL.", source="docs/adr/0002-db.md")
    new = memory.remember("shop", "decision", "Use PostgreSQL.", source="docs/adr/0002-db.md")
    assert memory.get(old.id).superseded_by == new.id
    assert [r.id for r in memory.records("shop")] == [new.id]
    assert [h.id for h in memory.search("shop", "MySQL")] == [new.id]
    assert len(memory.records("shop", superseded=True)) == 2


def test_the_same_text_again_is_not_a_second_row(memory: Memory) -> None:
    first = memory.remember("shop", "pattern", "Cursors for pagination.")
    again = memory.remember("shop", "pattern", "  Cursors for pagination.  ")
    assert again.id == first.id and len(memory.records(superseded=True)) == 1


def test_a_near_duplicate_supersedes_instead_of_adding(memory: Memory) -> None:
    first = memory.remember("shop", "decision", "We deploy on Kubernetes with Helm charts")
    second = memory.remember("shop", "decision", "We deploy on Kubernetes with Helm charts.")
    assert memory.get(first.id).superseded_by == second.id
    other = memory.remember("shop", "decision", "Emails are sent with Amazon SES")
    assert memory.get(other.id).superseded_by is None and len(memory.records("shop")) == 2


def test_supersedes_names_the_memory_replaced(memory: Memory) -> None:
    old = memory.remember("shop", "decision", "Payments by PayPal.")
    new = memory.remember("shop", "decision", "Payments by Stripe.", supersedes=old.id)
    assert memory.get(old.id).superseded_by == new.id
    with pytest.raises(NotFound):
        memory.remember("shop", "decision", "Payments by Adyen.", supersedes="0" * 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "decision", "x"), "project: required"),
        (("p", "wish", "x"), "type: must be one of decision, architecture, pattern, preference"),
        (("p", "decision", "   "), "content: must not be empty"),
        (("p" * 201, "decision", "x"), "project: at most 200"),
    ],
)
def test_bad_input_is_refused_with_one_line(
    memory: Memory, args: tuple[str, str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        memory.remember(*args)


def test_quotes_in_names_are_data_not_sql(memory: Memory) -> None:
    memory.remember("it's", "decision", "O'Reilly books on the shelf", user="o'hara")
    assert memory.search("it's", "O'Reilly")[0].content == "O'Reilly books on the shelf"
    assert [r.user for r in memory.export("o'hara")] == ["o'hara"]
    assert memory.records(project="x' OR '1'='1") == []


def test_forget_removes_one_memory(memory: Memory) -> None:
    keep = memory.remember("shop", "decision", "Keep this one.")
    gone = memory.remember("shop", "decision", "Forget this other thing entirely.")
    assert memory.forget(gone.id).content == gone.content
    assert [r.id for r in memory.records(superseded=True)] == [keep.id]
    with pytest.raises(NotFound):
        memory.forget(gone.id)


def test_an_empty_query_gives_the_newest(memory: Memory) -> None:
    memory.remember("shop", "decision", "first")
    memory.remember("shop", "decision", "second thing")
    assert [h.content for h in memory.search("shop", " ")] == ["second thing", "first"]


def test_another_embedder_takes_over_the_memories(isolated: Path) -> None:
    hashing = open_memory(load_settings(memory={"embedder": "hashing"}))
    rec = hashing.remember("shop", "decision", "We use PostgreSQL.", user="ann")
    wordllama = open_memory(load_settings(memory={"embedder": "wordllama"}))
    assert [r.id for r in wordllama.records()] == [rec.id]
    assert wordllama.search("shop", "database")[0].id == rec.id


def test_an_index_is_built_past_the_threshold(isolated: Path) -> None:
    memory = open_memory(load_settings(memory={"embedder": "hashing", "index_threshold": 256}))
    table = memory.table
    rows = [f"memory number {i} about topic {i % 17}" for i in range(300)]
    memory.add_many("small", [("pattern", t) for t in rows[:40]])
    assert {i.name for i in table.table().list_indices()} == {"content_idx"}
    memory.add_many("big", [("pattern", t) for t in rows[40:]])
    names = {i.name for i in table.table().list_indices()}
    assert {"content_idx", "vector_idx", "live_project_idx"} <= names
    assert memory.search("big", "memory number 77 about topic 9")[0].content == rows[77]
    assert memory.search("small", "memory number 7 about topic 7")[0].content == rows[7]
