"""Chaos trials on both stores: kill the owner, kill a worker, stop the owner past its lease.

CI runs one trial per fault kind and store (seeded, so a failure can be re-run);
``bench/chaos.py`` runs the nightly size (20 random trials per store). See
``tests/core/chaos.py`` for what each trial checks.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import KINDS, run_trial  # noqa: E402

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("CONNECTSW_CHAOS_TRIALS", "1"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("kind", KINDS)
def test_chaos(kind: str, store_url: str, tmp_path: Path) -> None:
    rng = random.Random(f"{kind}-{store_url.split(':')[0]}")
    for n in range(TRIALS):
        delay = rng.uniform(0.5, 6.0)
        trial = run_trial(tmp_path / f"trial{n}", store_url, kind, delay)
        assert not trial.problems, f"{kind} after {delay:.2f}s: " + "; ".join(trial.problems)
