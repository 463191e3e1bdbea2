"""The memory table's index upkeep (core/memory_store.py): the vector index stays one
fresh part as rows come in, and its answers stay close to the exact search's."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from connectsw.conf.settings import load_settings
from connectsw.core.memory import live, open_memory
from connectsw.core.memory_store import (
    MAX_FRAGMENTS,
    MAX_INDEX_PARTS,
    MAX_UNINDEXED,
    VECTOR_INDEX,
    MemoryTable,
)

WORDS = [f"w{i:03d}x" for i in range(400)]


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))


def recall(table: MemoryTable, vectors: np.ndarray, where: str) -> float:
    """Mean top-10 overlap of the indexed search with the exact one."""
    found = []
    for vector in vectors:
        exact = {r["id"] for r in table.brute_force(vector, where, 10)}
        near = {r["id"] for r in table.vector_search(vector, where, 10)}
        found.append(len(exact & near) / max(1, len(exact)))
    return float(np.mean(found))


def test_the_index_stays_fresh_and_exact_enough_after_incremental_adds(isolated: Path) -> None:
    rng = random.Random(3)
    memory = open_memory(load_settings(memory={"embedder": "hashing", "index_threshold": 256}))
    table = memory.table
    memory.add_many("big", [("pattern", text(rng)) for _ in range(400)])
    memory.add_many("other", [("pattern", text(rng)) for _ in range(50)])
    lance = table.table()
    assert lance.index_stats(VECTOR_INDEX).num_unindexed_rows < MAX_UNINDEXED
    queries = memory.embedder.embed([text(rng) for _ in range(15)])
    assert recall(table, queries, live("big")) >= 0.9  # fresh

    # Rows one at a time and in small batches, some close to the queries.
    for i in range(2 * MAX_FRAGMENTS + 4):  # past the merge of data files twice
        memory.remember("big", "decision", text(rng) + f" note {i}")
    for _ in range(4):
        memory.add_many("big", [("pattern", text(rng)) for _ in range(90)])
    stats = lance.index_stats(VECTOR_INDEX)
    assert stats.num_indices <= MAX_INDEX_PARTS
    assert stats.num_unindexed_rows < MAX_UNINDEXED
    assert lance.stats()["fragment_stats"]["num_fragments"] <= MAX_FRAGMENTS
    assert stats.num_indexed_rows + stats.num_unindexed_rows == lance.count_rows()
    assert recall(table, queries, live("big")) >= 0.9  # after the adds
    # A new memory is found at once, indexed or not.
    rec = memory.remember("big", "decision", "zz unique words only here qq")
    assert memory.search("big", "zz unique words only here qq")[0].id == rec.id


def test_the_parts_of_the_vector_index_are_merged_past_the_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    table = MemoryTable(str(tmp_path / "db"), "plain", 16, index_threshold=256)

    def rows(n: int) -> list[dict[str, object]]:
        vectors = rng.standard_normal((n, 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        now = np.datetime64("2026-01-01T00:00:00", "us").item()
        return [
            {"id": f"r{rng.integers(1 << 62)}", "project": "p", "type": "pattern",
             "content": "row", "source": "", "user": "", "created_at": now,
             "updated_at": now, "superseded_by": "", "live_project": "p", "vector": v}
            for v in vectors
        ]  # fmt: skip

    table.add(rows(300))
    lance = table.table()
    assert lance.index_stats(VECTOR_INDEX).num_indices == 1
    for _ in range(3 * MAX_INDEX_PARTS):  # each batch is indexed by LanceDB's optimize
        table.add(rows(MAX_UNINDEXED))
        assert lance.index_stats(VECTOR_INDEX).num_indices <= MAX_INDEX_PARTS
    assert lance.index_stats(VECTOR_INDEX).num_unindexed_rows == 0


def test_a_vector_length_not_divisible_by_8_gets_a_scalar_quantized_index(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    table = MemoryTable(str(tmp_path / "db"), "odd", 12, index_threshold=256)
    vectors = rng.standard_normal((300, 12)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = np.datetime64("2026-01-01T00:00:00", "us").item()
    table.add(
        [
            {
                "id": f"r{i}",
                "project": "p",
                "type": "pattern",
                "content": f"row {i}",
                "source": "",
                "user": "",
                "created_at": now,
                "updated_at": now,
                "superseded_by": "",
                "live_project": "p",
                "vector": v,
            }
            for i, v in enumerate(vectors)
        ]  # fmt: skip
    )
    assert table.table().index_stats(VECTOR_INDEX).index_type == "IVF_SQ"
    assert table.vector_search(vectors[42], "live_project = 'p'", 1)[0]["id"] == "r42"


ADD_AT_ONCE = """
import sys, time
from pathlib import Path
from connectsw.conf.settings import load_settings
from connectsw.core.errors import StoreError
from connectsw.core.memory import open_memory

root, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
failed = 0
for round_ in range(rounds):
    memory = open_memory(
        load_settings(data_dir=root / f"data-{round_}", memory={"embedder": "hashing"})
    )
    (root / f"ready-{round_}-{me}").touch()
    while not (root / f"go-{round_}").exists():
        time.sleep(0.001)
    try:
        memory.remember("P", "decision", f"We use PostgreSQL number {me} because reasons")
    except StoreError as exc:
        print(f"round {round_}: {exc}", file=sys.stderr)
        failed = 1
sys.exit(6 if failed else 0)
"""
PROCESSES, ROUNDS = 6, 8


def test_first_adds_at_once_on_a_fresh_database_all_succeed(tmp_path: Path) -> None:
    """Trial 6 (issue 5, kind 9): six processes adding the first memories of a fresh
    database at once: one now and then failed with "memory could not be written: lance
    error: Retryable commit conflict ... CreateIndex ... preempted,
    /root/.cargo/.../conflict_resolver.rs:926:34", though its row was written (the
    first build of the full-text index lost the race). Real processes, released
    together on each of ROUNDS fresh databases once each has opened it."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADD_AT_ONCE, str(tmp_path), str(i), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        for round_ in range(ROUNDS):
            ready = [tmp_path / f"ready-{round_}-{i}" for i in range(PROCESSES)]
            end = time.monotonic() + 120
            while not all(r.exists() for r in ready) and time.monotonic() < end:
                if any(p.poll() is not None for p in procs):
                    break
                time.sleep(0.01)
            (tmp_path / f"go-{round_}").touch()
        outcomes = [(p.wait(120), p.communicate()[1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(code == 0 and err == "" for code, err in outcomes), outcomes
    texts = [f"We use PostgreSQL number {i} because reasons" for i in range(PROCESSES)]
    for round_ in range(ROUNDS):
        data = tmp_path / f"data-{round_}"
        settings = load_settings(data_dir=data, memory={"embedder": "hashing"})
        records = open_memory(settings).records("P")
        assert sorted(r.content for r in records) == sorted(texts), round_


def test_lance_messages_name_no_rust_source_place() -> None:
    from connectsw.core.memory_store import lance_message

    raw = (
        "lance error: Retryable commit conflict for version 4: preempted. Please retry., "
        "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/lance-13.0.0/src/io/"
        "commit/conflict_resolver.rs:926:34"
    )
    assert lance_message(RuntimeError(raw)) == (
        "lance error: Retryable commit conflict for version 4: preempted. Please retry."
    )


def test_lance_messages_hide_the_secrets_of_memory_url() -> None:
    """Issue 5, kind 8: ``memory.url`` may be an object-storage URL holding a password
    or a signed query (``?sig=``); LanceDB's errors quote it."""
    from connectsw.core.memory_store import lance_message

    uri = "az://u:Pw9SECRET@acct/memory?sv=2024&sig=Sg9SECRET%2Fx"
    raw = f"lance error: Dataset at path {uri} was not found: sig=Sg9SECRET/x"
    message = lance_message(RuntimeError(raw), uri)
    assert "Pw9SECRET" not in message and "Sg9SECRET" not in message, message
    assert "az://u:***@acct/memory?sv=2024&sig=***" in message, message
