"""Nightly chaos: N trials per store, each killing one thing at a random moment, then resuming.

    python bench/chaos.py --trials 20 [--store postgresql://...]

Prints one line per trial and a summary; exits 1 if any trial broke a promise
(see tests/core/chaos.py for the checks).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from chaos import KINDS, run_trial  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failed = 0
    for n in range(args.trials):
        kind = rng.choice(KINDS)
        delay = rng.uniform(0.5, 8.0)
        with tempfile.TemporaryDirectory() as tmp:
            url = args.store or f"sqlite:///{Path(tmp) / 'data' / 'connectsw.db'}"
            trial = run_trial(Path(tmp), url, kind, delay)
        verdict = "ok" if not trial.problems else "FAILED: " + "; ".join(trial.problems)
        print(
            f"trial {n + 1:2d} {kind:<11} at {delay:4.1f}s resumes={trial.resumes}"
            f" {trial.seconds:5.1f}s {verdict}",
            flush=True,
        )
        failed += bool(trial.problems)
    print(f"{args.trials - failed}/{args.trials} trials kept every promise")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
