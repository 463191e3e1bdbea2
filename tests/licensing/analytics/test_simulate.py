"""The traffic simulator: deterministic, labelled; the detectors meet the goals on it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from connectsw.licensing.analytics.evaluate import evaluate, open_dir, read_labels
from connectsw.licensing.analytics.simulate import SHARING_KINDS, simulate, to_arrow, write
from connectsw.licensing.usage import arrow_schema

START = datetime(2026, 3, 2, tzinfo=UTC)


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    a = to_arrow(simulate(12, 2, seed=7, start=START))
    b = to_arrow(simulate(12, 2, seed=7, start=START))
    c = to_arrow(simulate(12, 2, seed=8, start=START))
    assert a.equals(b) and not a.equals(c)
    assert a.schema == arrow_schema()


def test_writes_partitions_licenses_and_labels(tmp_path: Path) -> None:
    traffic = simulate(40, 3, seed=3, start=START, sharing=0.5)
    summary = write(traffic, tmp_path / "sim")
    parts = sorted(p.parent.name for p in (tmp_path / "sim" / "usage").rglob("*.parquet"))
    assert parts == ["date=2026-03-02", "date=2026-03-03", "date=2026-03-04"]
    assert (
        sum(pq.read_metadata(p).num_rows for p in (tmp_path / "sim" / "usage").rglob("*.parquet"))
        == summary["events"]
    )
    labels = read_labels(tmp_path / "sim" / "labels.csv")
    assert len(labels) == 40
    assert {v["label"] for v in labels.values()} == {"honest", "sharing"}
    assert {v["kind"] for v in labels.values() if v["label"] == "sharing"} <= set(SHARING_KINDS)
    header = (tmp_path / "sim" / "licenses.csv").read_text().splitlines()[0]
    assert header == "license_id,tier,max_users,status"


def test_detectors_meet_the_goals_on_simulated_traffic(tmp_path: Path) -> None:
    write(simulate(120, 4, seed=11, start=START, sharing=0.3), tmp_path / "sim")
    result = evaluate(open_dir(tmp_path / "sim"), read_labels(tmp_path / "sim" / "labels.csv"))
    assert result["sharing"] >= 25
    assert result["overall"]["detection_rate"] >= 0.95, result["missed"]
    assert result["overall"]["false_positive_rate"] <= 0.01, result["false_positives"]
    assert set(result["kinds"]) >= set(SHARING_KINDS)
    assert result["goals_met"]
