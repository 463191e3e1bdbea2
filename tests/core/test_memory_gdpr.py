"""GDPR: export gives everything about a user; purge leaves none of their bytes on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from connectsw.conf.settings import load_settings
from connectsw.core.memory import memory_uri, open_memory

SECRET = "Zanzibar-quokka-7731 prefers hand-rolled parsers"


def files_with(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_purge_removes_a_users_text_and_vectors_from_every_file() -> None:
    settings = load_settings(memory={"embedder": "hashing", "index_threshold": 256})
    memory = open_memory(settings)
    root = Path(memory_uri(settings))
    # Many rows of others (the purged rows are far below the 10 % at which LanceDB's
    # compaction would rewrite a file by itself), indexes built, two versions of hers.
    memory.add_many("shop", [("pattern", f"pattern {i} of bob") for i in range(400)], user="bob")
    mine = memory.remember("shop", "preference", SECRET, source="a.md", user="eve")
    memory.remember("shop", "preference", SECRET + " and tabs", source="a.md", user="eve")
    memory.remember("blog", "decision", "Eve chose Hugo", user="eve")
    vector = memory.embedder.embed([SECRET])[0].astype(np.float32).tobytes()
    assert files_with(root, b"Zanzibar") and files_with(root, vector[:64])

    exported = memory.export("eve")
    assert {r.content for r in exported} == {SECRET, SECRET + " and tabs", "Eve chose Hugo"}
    assert next(r for r in exported if r.id == mine.id).superseded_by is not None

    assert memory.purge("eve") == 3
    assert files_with(root, b"Zanzibar") == []
    assert files_with(root, b"Hugo") == []
    assert files_with(root, vector[:64]) == []
    assert memory.export("eve") == []
    assert len(memory.records("shop")) == 400  # the others stay, and stay searchable
    assert memory.search("shop", "pattern 12 of bob")[0].content == "pattern 12 of bob"
    assert memory.purge("eve") == 0


def test_purge_reaches_the_table_of_an_embedder_no_longer_used() -> None:
    hashing = open_memory(load_settings(memory={"embedder": "hashing"}))
    hashing.remember("shop", "preference", SECRET, user="eve")
    settings = load_settings(memory={"embedder": "wordllama"})
    wordllama = open_memory(settings)  # takes the memories over, embedded again
    assert [r.content for r in wordllama.export("eve")] == [SECRET]
    assert wordllama.purge("eve") == 1
    assert files_with(Path(memory_uri(settings)), b"Zanzibar") == []
