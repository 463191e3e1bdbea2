"""``connectsw simulate traffic`` and ``connectsw antipiracy scan`` as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("connectsw")
pytestmark = pytest.mark.slow


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        stdin=subprocess.DEVNULL,
    )


def test_simulate_then_scan(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    made = cli(
        "simulate",
        "traffic",
        "--licenses",
        "25",
        "--days",
        "2",
        "--out",
        out,
        "--seed",
        "4",
        "--start",
        "2026-03-02",
        "--sharing",
        "0.5",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["licenses"] == 25
    scan = cli("antipiracy", "scan", "--since", "2026-03-01", "--data", out, "--json")
    assert scan.returncode == 0, scan.stderr
    report = json.loads(scan.stdout)
    labels = {
        line.split(",")[0]: line.split(",")[1]
        for line in (out / "labels.csv").read_text().splitlines()[1:]
    }
    flagged = {v["license_id"] for v in report["licenses"] if v["recommendation"] != "none"}
    assert flagged == {k for k, v in labels.items() if v == "sharing"}
    first = report["licenses"][0]
    assert first["findings"][0]["evidence"] and first["flags"]
    text = cli("antipiracy", "scan", "--since", "2026-03-01", "--data", out)
    assert text.returncode == 0 and "CSFW-" in text.stdout


def test_scan_of_an_empty_data_dir_and_bad_input() -> None:
    empty = cli("antipiracy", "scan", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["licenses"] == []
    bad = cli("antipiracy", "scan", "--since", "last week")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--since" in bad.stderr
    start = cli("simulate", "traffic", "--out", "x", "--start", "March")
    assert start.returncode == 2 and "--start" in start.stderr and "Traceback" not in start.stderr
