"""Detection and false-positive rates of the anti-piracy detectors on simulated, labelled traffic.

    .venv/bin/python bench/antipiracy_detection.py --licenses 1000 --days 7 [--seed 1]

Goals (issue 7): >= 95 % of sharing licenses flagged (recommendation not "none"),
<= 1 % of honest ones; per detector: the share of sharing / honest licenses it flags.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from connectsw.licensing.analytics.evaluate import evaluate, open_dir, read_labels
from connectsw.licensing.analytics.simulate import simulate, write


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--licenses", type=int, default=1000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sharing", type=float, default=0.2)
    p.add_argument("--data", type=Path, help="an existing `simulate traffic` directory")
    args = p.parse_args()
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp(prefix="antipiracy-eval-"))
        start = datetime(2026, 3, 2, tzinfo=UTC)
        write(
            simulate(args.licenses, args.days, seed=args.seed, start=start, sharing=args.sharing),
            data,
        )
    r = evaluate(open_dir(data), read_labels(data / "labels.csv"))
    print(f"licenses {r['licenses']}: {r['sharing']} sharing, {r['honest']} honest")
    print(f"{'detector':22} {'detection':>10} {'false pos.':>10}")
    for d, v in r["detectors"].items():
        print(f"{d:22} {v['detection_rate']:10.1%} {v['false_positive_rate']:10.1%}")
    o = r["overall"]
    print(
        f"{'overall (flagged)':22} {o['detection_rate']:10.1%} {o['false_positive_rate']:10.1%}"
        f"   goals (>=95 %, <=1 %): {'met' if r['goals_met'] else 'NOT met'}"
    )
    print(
        json.dumps(
            {"kinds": r["kinds"], "missed": r["missed"], "false_positives": r["false_positives"]}
        )
    )


if __name__ == "__main__":
    main()
