"""Retrieval quality: 62 memories of one project, 62 paraphrased questions (issue 8).

Each question (tests/core/memory_corpus.py) asks for one memory in other words.
hit@1: the expected memory is first; hit@5: it is in the first five. The figures
are printed (``pytest -s``) for each embedder and ``memory.search`` mode. Measured
here (deterministic), hit@1 / hit@5:

=========  ===========  ===========
embedder   vector       hybrid (RRF)
=========  ===========  ===========
mpnet      0.77 / 0.94  0.52 / 0.89
minilm     0.63 / 0.89  0.42 / 0.87
wordllama  0.40 / 0.61  0.27 / 0.58
hashing    0.11 / 0.32  0.15 / 0.34
=========  ===========  ===========

The default (minilm, vector) is what ships. The issue's goal for the default
embedder (hit@1 >= 0.8, hit@5 >= 0.95) is NOT reached: the questions that miss need
knowledge a 22M-parameter sentence model lacks (that Playwright drives a browser,
that PagerDuty wakes the on-call person). mpnet (all-mpnet-base-v2, 110M
parameters, opt-in) comes closest, 2 questions short at hit@1 and 1 at hit@5; it is
not the default because it costs about 8 times minilm's compute per text, and the
engine embeds every document its agents write at each checkpoint. The assertions
hold the measured level, rounded down, so a regression fails; :data:`GOAL` is
printed beside them.
"""

from __future__ import annotations

import functools

import pytest

from connectsw.conf.settings import load_settings
from connectsw.core.memory import open_memory

from .memory_corpus import CORPUS

#: The issue's goal for the default embedder (hit@1, hit@5).
GOAL = (0.8, 0.95)
#: (hit@1, hit@5) each embedder must keep, per search mode (measured level, rounded down).
FLOORS = {
    ("mpnet", "vector"): (0.75, 0.9),
    ("mpnet", "hybrid"): (0.4, 0.85),
    ("minilm", "vector"): (0.6, 0.85),
    ("minilm", "hybrid"): (0.4, 0.85),
    ("wordllama", "vector"): (0.38, 0.6),
    ("wordllama", "hybrid"): (0.2, 0.55),
    ("hashing", "vector"): (0.1, 0.3),
    ("hashing", "hybrid"): (0.12, 0.3),
}


@functools.cache  # deterministic: measured once per run
def hits(embedder: str) -> dict[str, tuple[float, float]]:
    """(hit@1, hit@5) of ``embedder`` for each search mode."""
    memory = open_memory(load_settings(memory={"embedder": embedder}))
    ids = [memory.remember("proj", kind, text, user="u").id for kind, text, _ in CORPUS]
    assert len(set(ids)) == len(CORPUS)  # none superseded another
    figures = {}
    for mode in ("vector", "hybrid"):
        memory.settings = memory.settings.model_copy(update={"search": mode})
        at1 = at5 = 0
        for expected, (_, _, query) in zip(ids, CORPUS, strict=True):
            found = [h.id for h in memory.search("proj", query, limit=5)]
            at1 += found[:1] == [expected]
            at5 += expected in found
        figures[mode] = (at1 / len(CORPUS), at5 / len(CORPUS))
    return figures


def test_the_corpus_has_enough_paraphrases() -> None:
    assert len(CORPUS) >= 60
    for _, text, query in CORPUS:
        assert query.lower() not in text.lower()


@pytest.mark.parametrize("embedder", ["hashing", "wordllama", "minilm", "mpnet"])
def test_hit_at_1_and_at_5(embedder: str) -> None:
    figures = hits(embedder)
    default = load_settings().memory
    for mode, (at1, at5) in figures.items():
        shipped = " (the default)" if (embedder, mode) == (default.embedder, default.search) else ""
        print(f"\n{embedder} {mode}{shipped}: hit@1 {at1:.2f}, hit@5 {at5:.2f} over "
              f"{len(CORPUS)} queries; goal {GOAL[0]} / {GOAL[1]}")  # fmt: skip
        floor1, floor5 = FLOORS[(embedder, mode)]
        assert at1 >= floor1 and at5 >= floor5, (mode, at1, at5)


def test_the_default_is_the_best_of_the_light_embedders_and_mpnet_beats_it() -> None:
    """minilm's vector search beats every other light embedder and mode measured here;
    mpnet (opt-in: about 8 times minilm's compute per text) beats minilm."""
    default = load_settings().memory
    assert (default.embedder, default.search) == ("minilm", "vector")
    best = hits("minilm")["vector"]
    for embedder in ("hashing", "wordllama"):
        assert all(best[0] > at1 and best[1] > at5 for at1, at5 in hits(embedder).values())
    stronger = hits("mpnet")["vector"]
    assert stronger[0] > best[0] and stronger[1] > best[1]
