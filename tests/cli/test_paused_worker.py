"""A shell task whose Dask worker is paused (SIGSTOP) while its command runs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from .conftest import Cli
from .test_cancel import _parent

PAUSED = {
    "name": "paused",
    "tasks": [
        {
            "id": "short",
            "agent": "shell",
            "timeout": 4,
            "retries": 1,
            "with": {"command": "echo $$ > started.txt; sleep 1; date > end-$CONNECTSW_ATTEMPT"},
        }
    ],
}


def test_a_command_that_ended_in_time_is_its_result_when_its_worker_was_paused(
    tmp_path: Path,
) -> None:
    """Trial 7, M4: a Dask worker stopped (SIGSTOP, a stalled machine) while its command
    ran, and resumed past the deadline. The command had ended in time, yet the attempt
    was recorded "timed out after 8s" and attempt 2 ran it again. The supervisor (and
    its reaper, which enforces the deadline while the worker is stopped) had let the
    command finish: its result is the attempt's."""
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(PAUSED))
    runner = Cli(tmp_path, tmp_path / "data", fast=False)
    runner.env.update(CONNECTSW_DASK__N_WORKERS="1")
    owner = runner.spawn("run", "g.json", "--json", "-w", ws)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not (ws / "started.txt").is_file() or not (ws / "started.txt").read_text():
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        shell = int((ws / "started.txt").read_text())
        worker = _parent(_parent(shell))  # shell <- reaper <- Dask worker
        os.kill(worker, signal.SIGSTOP)
        time.sleep(6)  # past the command's end (1 s) and its deadline (4 s)
        assert (ws / "end-1").is_file()  # it ended while its worker was stopped
        os.kill(worker, signal.SIGCONT)
        worker = None
        out, err = owner.communicate(timeout=120)
    finally:
        if worker is not None:
            os.kill(worker, signal.SIGCONT)
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 0, err
    assert json.loads(out)["tasks"] == {"short": "succeeded"}
    assert not (ws / "end-2").exists(), "attempt 2 ran it again"
