"""Project memory: top-10 hybrid search over 100,000 memories of one project, beside
LanceDB's brute-force vector search in the same run; add throughput.

What is timed:

- add: ``Memory.add_many`` in batches (bulk import: embed, write, keep indexes
  fresh; the IVF_PQ index is built when the project passes ``memory.index_threshold``),
  and ``Memory.remember`` one at a time (what the CLI and the engine do: duplicate
  and supersede checks, one write each), in memories per second;
- search: ``Memory.search`` (the query embedded, then LanceDB's hybrid query:
  vector + full-text, prefiltered by project, RRF), top 10, p50/p95 in ms; the
  baseline is LanceDB's exact vector search (``bypass_vector_index``) with the same
  prefilter and query vectors. Goal (issue 8): hybrid p95 < 20 ms.

Texts are synthetic sentences over a 3,000-word vocabulary (so full-text search has
real postings); a second project of 2,000 memories checks that the prefilter
holds. Usage::

    .venv/bin/python bench/memory_search.py [--n 100000] [--queries 200] [--embedder wordllama]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from connectsw.conf.settings import load_settings
from connectsw.core.memory import Memory, live, open_memory
from connectsw.core.memory_store import quote

GOAL_P95_MS = 20.0
TYPES = ("decision", "architecture", "pattern", "preference")


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def sentence(rng: random.Random, words: list[str], i: int) -> str:
    picked = " ".join(rng.choice(words) for _ in range(rng.randint(8, 16)))
    return f"We decided {picked} (note {i})."


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def bulk_add(memory: Memory, project: str, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        memory.add_many(project, [(TYPES[j % 4], t) for j, t in enumerate(chunk)], user="bench")
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="memories in the big project")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per bulk add")
    parser.add_argument("--embedder", default="wordllama", help="wordllama or hashing")
    args = parser.parse_args()
    rng = random.Random(8)
    words = vocabulary(rng)
    texts = [sentence(rng, words, i) for i in range(args.n)]
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(data_dir=Path(folder), memory={"embedder": args.embedder})
        memory = open_memory(settings)
        memory.embedder.embed(["warm up"])  # a model loads once, not inside a timing
        add_rate = bulk_add(memory, "big", texts, args.batch)
        bulk_add(memory, "small", [sentence(rng, words, i) for i in range(2000)], 2000)
        singles = [sentence(rng, words, args.n + i) for i in range(200)]
        start = time.perf_counter()
        for text in singles:
            memory.remember("big", "decision", text, user="bench")
        single_rate = len(singles) / (time.perf_counter() - start)
        indexes = sorted(i.name for i in memory.table.table().list_indices())

        queries = [
            " ".join(rng.choice(words) for _ in range(rng.randint(2, 5)))
            for _ in range(args.queries)
        ]
        vectors = memory.embedder.embed(queries)
        where = live("big")
        memory.search("big", queries[0])  # first query opens files
        memory.table.brute_force(vectors[0], where, 10)
        hybrid: list[float] = []
        brute: list[float] = []
        leaked = 0
        for i, query in enumerate(queries):
            # Alternate which runs first: the machine is shared.
            order = (0, 1) if i % 2 else (1, 0)
            for which in order:
                start = time.perf_counter()
                if which == 0:
                    hits = memory.search("big", query, limit=10)
                    hybrid.append((time.perf_counter() - start) * 1000)
                    leaked += sum(not h.content.startswith("We decided") for h in hits)
                else:
                    memory.table.brute_force(vectors[i], where, 10)
                    brute.append((time.perf_counter() - start) * 1000)
        small = memory.search("small", queries[0], limit=10)
        big_ids = {r["id"] for r in memory.table.rows(f"project = {quote('big')}", limit=5)}
        assert not big_ids & {h.id for h in small}, "prefilter leaked another project"

    dim = memory.embedder.dim
    print(f"memory search bench: {args.n:,} memories in one project (+2,000 in another), "
          f"embedder {args.embedder} ({dim}-d), indexes {', '.join(indexes)}")  # fmt: skip
    print(f"add (bulk, batches of {args.batch:,}): {add_rate:,.0f} memories/s")
    print(f"add (remember, one at a time, supersede checks): {single_rate:,.1f} memories/s")
    h50, h95 = percentile(hybrid, 50), percentile(hybrid, 95)
    b50, b95 = percentile(brute, 50), percentile(brute, 95)
    verdict = "met" if h95 < GOAL_P95_MS else "NOT met"
    print(f"hybrid top-10 (embed + vector index + FTS + RRF): p50 {h50:.1f} ms, p95 {h95:.1f} ms "
          f"(goal p95 < {GOAL_P95_MS:.0f} ms: {verdict})")  # fmt: skip
    print(f"brute-force vector top-10 (LanceDB, no index): p50 {b50:.1f} ms, p95 {b95:.1f} ms")
    print(f"ratio brute-force / hybrid: p50 {b50 / h50:.1f}x, p95 {b95 / h95:.1f}x; "
          f"mean hybrid {statistics.mean(hybrid):.1f} ms over {len(hybrid)} queries")  # fmt: skip


if __name__ == "__main__":
    main()
