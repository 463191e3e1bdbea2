"""Ids people copy are shown whole in tables, even at 80 columns without a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_license_list_at_80_columns_keeps_whole_ids(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"), COLUMNS="80")
    cli = [sys.executable, "-m", "connectsw.cli.main", "license"]
    issued = subprocess.run(
        [*cli, "issue", "--tier", "ENTERPRISE", "--email", "someone.long@example.com", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    license_id = json.loads(issued.stdout)["id"]
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, check=True)
    assert license_id in listed.stdout, listed.stdout
