"""``connectsw cancel`` from another process, while a command runs on real worker processes.

The command's whole process group ends, ``cancel`` returns once it has, the
running task and the one that never started are recorded ``cancelled``, and the
process that ran the execution exits on its own with the cancelled execution's exit
code (issue 5, faults 1 and 11). Cancel at a checkpoint records the later stages'
tasks ``cancelled``: they will never run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import CHECKPOINT_GRAPH, Cli

GRAPH = {
    "name": "cancel-me",
    "tasks": [
        {
            "id": "long",
            "agent": "shell",
            # Far longer than a cancel takes, even on a loaded machine: the task must still
            # be running when the cancel arrives. Its shell's pid goes to started.txt.
            "with": {"command": "echo $$ > started.txt; sleep 60; date > after.txt"},
        },
        {"id": "later", "agent": "noop", "needs": ["long"]},
    ],
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "connectsw.cli.main", *args]


@pytest.mark.slow
def test_cancel_stops_the_running_command_and_returns_once_it_stopped(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(GRAPH))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"))
    owner = subprocess.Popen(
        cli("run", "g.json", "--yes", "--json", "-w", str(ws)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (shell := _pid_in(ws / "started.txt")) is None:
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.1)
        listed = subprocess.run(
            cli("status", "--json"), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        execution_id = json.loads(listed.stdout)[0]["executionId"]
        start = time.monotonic()
        cancel = subprocess.run(
            cli("cancel", execution_id, "--json"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - start
        shell_alive = _alive(shell)
        assert cancel.returncode == 0, cancel.stderr
        view = json.loads(cancel.stdout)
        assert view["status"] == "cancelled"
        assert view["tasks"] == {"long": "cancelled", "later": "cancelled"}
        out, err = owner.communicate(timeout=30)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    # Cancelled by another process while it ran: not a success (exit 8, README).
    assert owner.returncode == ExitCode.CANCELLED == 8, err
    assert json.loads(out)["status"] == "cancelled"
    # It returned when the command had stopped (its shell is gone, so after.txt will never
    # be written), not when the command would have ended (60 s).
    assert not shell_alive
    assert took < 30
    assert not (ws / "after.txt").exists()


def _pid_in(path: Path) -> int | None:
    """The pid written to ``path``, or None while it is not (completely) written."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


CHECKPOINTED = {
    "name": "cp-cancel",
    "tasks": [
        {"id": "a", "agent": "noop"},
        {"id": "b", "agent": "noop", "needs": ["a"]},
        {"id": "c", "agent": "noop", "needs": ["b"]},
    ],
    "checkpoints": [{"after": ["a"], "question": "go on?"}],
}


def test_cancel_at_a_checkpoint_shows_the_later_tasks_cancelled(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps(CHECKPOINTED))
    ran = cli("run", "g.json", "--json", "-w", tmp_path / "ws", ok=True)  # stops at the checkpoint
    assert ran.json()["status"] == "awaiting_checkpoint"
    execution_id = ran.json()["executionId"]
    cancelled = cli("cancel", execution_id, "--json", ok=True).json()
    expected = {"a": "succeeded", "b": "cancelled", "c": "cancelled"}
    assert cancelled["status"] == "cancelled"
    assert cancelled["tasks"] == expected
    shown = cli("status", execution_id, "--json")
    assert shown.returncode == ExitCode.CANCELLED, str(shown)
    assert shown.json()["tasks"] == expected
    assert "pending" not in cli("status", execution_id).stdout
    kinds = [(e["kind"], e.get("taskId")) for e in cli.events(execution_id)]
    assert ("task.cancelled", "b") in kinds and ("task.cancelled", "c") in kinds


def test_a_cancelled_execution_is_exit_8_for_approve_and_resume_and_cancel_again_is_0(
    cli, tmp_path
):
    (tmp_path / "g.yaml").write_text(CHECKPOINT_GRAPH)
    eid = cli("run", "g.yaml", "-w", "ws", ok=True).execution_id
    assert cli("cancel", eid).returncode == 0
    assert cli("cancel", eid).returncode == 0  # again: it is cancelled, as asked
    for command in (["approve", eid], ["request-changes", eid, "--feedback", "x"], ["resume", eid]):
        result = cli(*command)
        assert result.returncode == 8, str(result)
        assert "was cancelled" in result.error_line()
    assert cli("status", eid).returncode == 8


STALLED = {
    "name": "stalled",
    "tasks": [
        {
            "id": "long",
            "agent": "shell",
            "timeout": 600,
            "with": {"command": "echo $$ > started.txt; sleep 15; date > late.txt"},
        }
    ],
}


@pytest.mark.slow
def test_cancel_ends_the_command_of_a_stopped_worker(tmp_path: Path) -> None:
    # Trial 5 item 1: with its Dask worker stopped (kill -STOP), cancel waited 41 s and the
    # command ran to its end.
    ws = tmp_path / "ws"
    (tmp_path / "g.json").write_text(json.dumps(STALLED))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"))
    owner = subprocess.Popen(
        cli("run", "g.json", "--yes", "--json", "-w", str(ws)),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while (shell := _pid_in(ws / "started.txt")) is None:
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.1)
        began = time.monotonic()
        reaper = _parent(shell)
        worker = _parent(reaper)
        os.kill(worker, signal.SIGSTOP)
        listed = subprocess.run(
            cli("status", "--json"), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        execution_id = json.loads(listed.stdout)[0]["executionId"]
        cancel = subprocess.run(
            cli("cancel", execution_id),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - began
        assert cancel.returncode == 0, cancel.stderr
        assert took < 14  # before the command's own end (was 41 s: the lease timeout + 10)
        assert not _alive(shell)
        time.sleep(max(0.0, began + 17 - time.monotonic()))  # past the command's own end
        assert not (ws / "late.txt").exists()
        assert "did not stop its work" in cancel.stderr
    finally:
        if worker is not None:
            os.kill(worker, signal.SIGCONT)
        try:
            owner.communicate(timeout=60)
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.communicate()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
