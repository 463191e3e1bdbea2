"""A gate's command is stopped by ``cancel`` and by the loss of the owner's lease.

Gates run in the owner's process (not on a Dask worker): a slow test command of the
``tests-pass`` gate is ended (its whole process group) when the execution is
cancelled, and ``cancel`` returns once it has; after a takeover, the old owner's
gate run is ended before the new owner's starts, and the old owner writes nothing
more when it wakes. Real processes throughout: the CLI, the gate's ``sh`` and
``sleep``, SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode
from connectsw.core.monitor import pid_alive

from .conftest import Cli, command

pytestmark = pytest.mark.slow

GRAPH = {"name": "gated", "tasks": [{"id": "a", "agent": "noop"}], "gates": ["tests-pass"]}
LEASE = {
    "CONNECTSW_ENGINE__LEASE_TIMEOUT": "2",
    "CONNECTSW_ENGINE__HEARTBEAT_INTERVAL": "0.2",
}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.05)


def start(cli: Cli, *args: str | Path, test_command: str) -> subprocess.Popen[str]:
    cli.env.update(LEASE)  # for this process and the CLI's later reads
    env = {**cli.env, "CONNECTSW_GATES__TEST_COMMAND": test_command}
    return subprocess.Popen(
        [*command(), *(str(a) for a in args)],
        cwd=cli.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_cancel_ends_a_running_gate_command_and_returns_once_it_stopped(
    cli: Cli, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    gate = "sh -c 'echo $$ > gate.pid; exec sleep 30'"
    owner = start(cli, "run", "g.json", "--yes", "--json", "-w", ws, test_command=gate)
    try:
        wait_for(lambda: bool(pids(ws / "gate.pid")) or owner.poll() is not None, "gate start")
        assert owner.poll() is None, owner.communicate()
        sleeper = pids(ws / "gate.pid")[0]
        execution_id = cli("status", "--json", ok=True).json()[0]["executionId"]
        started = time.monotonic()
        cancel = cli("cancel", execution_id, "--json", ok=True, timeout=60)
        took = time.monotonic() - started
        alive_after_cancel = pid_alive(sleeper)
        out, err = owner.communicate(timeout=60)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert not alive_after_cancel  # cancel returned once the gate's command had ended
    assert took < 8, took  # TERM at once (heartbeat 0.2 s), not at the command's end
    assert cancel.json()["status"] == "cancelled"
    assert owner.returncode == ExitCode.CANCELLED, err
    assert json.loads(out)["status"] == "cancelled"
    events = cli.events(execution_id)
    kinds = [e["kind"] for e in events]
    # Recorded as stopped, neither passed nor failed, once the cancel had stopped it.
    assert "gate.failed" not in kinds and "gate.passed" not in kinds
    assert kinds[-2:] == ["execution.cancelled", "gate.stopped"]
    assert events[-1]["message"] == "stopped: cancelled"


def test_after_a_takeover_two_gate_runs_never_overlap(cli: Cli, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    # Each run notes any earlier gate run still alive, then sleeps (and passes).
    gate = (
        "sh -c 'for p in $(cat gate.pids 2>/dev/null); do"
        " kill -0 $p 2>/dev/null && echo $p >> overlap.txt; done;"
        " echo $$ >> gate.pids; exec sleep 6'"
    )
    first = start(cli, "run", "g.json", "--yes", "--json", "-w", ws, test_command=gate)
    second: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: bool(pids(ws / "gate.pids")) or first.poll() is not None, "gate 1")
        assert first.poll() is None, first.communicate()
        execution_id = cli("status", "--json", ok=True).json()[0]["executionId"]
        first.send_signal(signal.SIGSTOP)  # silent past its lease; its gate command runs on
        time.sleep(3)
        assert cli.view(execution_id)["status"] == "interrupted"
        second = start(cli, "resume", execution_id, "--yes", "--json", test_command=gate)
        wait_for(lambda: len(pids(ws / "gate.pids")) == 2, "gate 2")
        first.send_signal(signal.SIGCONT)  # wakes, learns its lease is lost, stops
        _, first_err = first.communicate(timeout=60)
        second_out, second_err = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.communicate()
    assert not (ws / "overlap.txt").exists(), (ws / "overlap.txt").read_text()
    assert first.returncode == ExitCode.NOT_ALLOWED, first_err
    assert "taken over by another process" in first_err or "took it over" in first_err
    assert "Traceback" not in first_err
    assert second.returncode == ExitCode.OK, second_err
    assert json.loads(second_out)["status"] == "completed"
    events = cli.events(execution_id)
    kinds = [e["kind"] for e in events]
    # The old owner's ended gate run wrote nothing (no gate.failed): one verdict, the new
    # one; the new owner recorded the old run as stopped (having ended it) before it resumed.
    assert kinds.count("gate.passed") == 1 and "gate.failed" not in kinds
    assert kinds.count("gate.stopped") == 1
    assert kinds.index("gate.stopped") < kinds.index("execution.resumed")
    assert kinds.index("execution.resumed") < kinds.index("gate.passed")
    stopped = events[kinds.index("gate.stopped")]
    assert "the process that ran it ended" in stopped["message"]


def test_the_owners_death_ends_its_gate_command_and_the_next_run_records_it_stopped(
    cli: Cli, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    gate = "sh -c 'echo $$ >> gate.pids; exec sleep 30'"
    owner = start(cli, "run", "g.json", "--yes", "--json", "-w", ws, test_command=gate)
    try:
        wait_for(lambda: bool(pids(ws / "gate.pids")) or owner.poll() is not None, "gate start")
        assert owner.poll() is None, owner.communicate()
        sleeper = pids(ws / "gate.pids")[0]
        owner.kill()  # kill -9: no cleanup of its own
        owner.communicate()
        # The supervisor's reaper ends the group when its owner dies (parent-death signal).
        wait_for(lambda: not pid_alive(sleeper), "the gate's command to end", timeout=10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    execution_id = cli("status", "--json", ok=True).json()[0]["executionId"]
    resumed = start(cli, "resume", execution_id, "--yes", "--json", test_command="true")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == ExitCode.OK, err
    assert json.loads(out)["status"] == "completed"
    kinds = [e["kind"] for e in cli.events(execution_id)]
    assert kinds.count("gate.stopped") == 1 and kinds.count("gate.passed") == 1
    assert kinds.index("gate.stopped") < kinds.index("execution.resumed")
