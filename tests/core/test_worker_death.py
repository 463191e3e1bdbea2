"""A worker that dies mid-task (kill -9, as an out-of-memory kill does) is one failed attempt.

Dask is never allowed to re-run the task behind the engine's back: the attempt
is recorded failed with a readable cause and the task's own ``retries`` decide.
A real CLI process runs a real 2-process LocalCluster (the shipped defaults).
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

from connectsw.core.models import TaskStatus
from connectsw.core.stores import open_store

pytestmark = pytest.mark.slow

# The shell's parent is the supervisor's reaper; the reaper's parent is the Dask worker.
KILL_WORKER = "echo ran >> ran.txt; kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)"


@pytest.mark.parametrize("retries", [0, 1])
def test_a_task_that_kills_its_worker_runs_once_per_attempt(tmp_path: Path, retries: int) -> None:
    ws = tmp_path / "ws"
    graph = {
        "name": "oom",
        "tasks": [
            {"id": "hog", "agent": "shell", "retries": retries, "with": {"command": KILL_WORKER}},
            {"id": "after", "agent": "noop", "needs": ["hog"]},
        ],
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"), CONNECTSW_ENGINE__RETRY_BACKOFF="0.05")
    proc = subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", "run", "g.json", "--yes", "--json", "-w", ws],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr
    view = json.loads(proc.stdout)
    assert view["status"] == "failed"
    assert "worker died" in view["error"]
    ran = (ws / "ran.txt").read_text().splitlines()
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}")
    try:
        hog = store.task_attempts(view["executionId"], "hog")
        # Each attempt ran its command once; the task's retries decide how many there
        # are. (A retry submitted under the key of the attempt its worker died in got
        # that attempt's error back from the scheduler: "lost before it started",
        # three times over, and the retry never ran.)
        assert [a.attempt for a in hog] == list(range(1, retries + 2))
        assert len(ran) == retries + 1
        assert [a.status for a in hog] == [TaskStatus.FAILED] * (retries + 1)
        assert all(a.process is not None for a in hog)
        assert all("worker died" in (a.error or "") for a in hog)
        after = store.task_attempts(view["executionId"], "after")
        assert [a.status for a in after] == [TaskStatus.SKIPPED]
    finally:
        store.close()


# Each task notes its attempt, then its worker (the reaper's parent), then runs for a
# while. The attempt comes first: the test kills the worker as soon as a worker file
# has content, and the attempt's note must be there by then.
NOTE_AND_WORK = (
    "echo $CONNECTSW_ATTEMPT >> ../ran_{id}; cut -d' ' -f4 /proc/$PPID/stat > ../worker_{id};"
    " sleep 1.5"
)


def test_a_worker_killed_from_outside_spends_no_retry_of_tasks_that_never_started(
    tmp_path: Path,
) -> None:
    """kill -9 of a worker while it runs one task and holds others queued: the running
    task fails that attempt (its own ``retries`` run it again); the queued ones never
    started, so no attempt of theirs is recorded or spent, and they run once, as
    attempt 1. The run completes by itself."""
    ids = [f"q{i}" for i in range(6)]
    graph = {
        "name": "queued",
        "tasks": [
            {"id": t, "agent": "shell", "retries": 1, "with": {"command": NOTE_AND_WORK}}
            for t in ids
        ],
    }
    for task in graph["tasks"]:
        task["with"]["command"] = task["with"]["command"].format(id=task["id"])
    (tmp_path / "g.json").write_text(json.dumps(graph))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(
        CONNECTSW_DATA_DIR=str(tmp_path / "data"),
        CONNECTSW_ENGINE__RETRY_BACKOFF="0.05",
        CONNECTSW_DASK__N_WORKERS="2",
        CONNECTSW_DASK__THREADS_PER_WORKER="1",
        # Every task is sent to a worker at once: each worker holds some queued.
        DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="inf",
    )
    owner = subprocess.Popen(
        [sys.executable, "-m", "connectsw.cli.main", "run", "g.json", "--yes", "--json"]
        + ["-w", str(tmp_path / "ws")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (noted := [p for p in tmp_path.glob("worker_q*") if p.read_text().strip()]):
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "no task started"
            time.sleep(0.02)
        victim = noted[0].name.removeprefix("worker_")
        os.kill(int(noted[0].read_text()), signal.SIGKILL)
        out, err = owner.communicate(timeout=240)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 0, err
    view = json.loads(out)
    assert view["status"] == "completed"
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'connectsw.db'}")
    try:
        attempts = {t: store.task_attempts(view["executionId"], t) for t in ids}
    finally:
        store.close()
    runs = {t: [int(n) for n in (tmp_path / f"ran_{t}").read_text().split()] for t in ids}
    # The task that was running: attempt 1 failed with its worker, attempt 2 succeeded.
    assert [a.status for a in attempts[victim]] == [TaskStatus.FAILED, TaskStatus.SUCCEEDED]
    assert "worker died" in (attempts[victim][0].error or "")
    assert runs[victim] == [1, 2]
    # Every attempt recorded is one that ran; the queued tasks ran once, as attempt 1.
    for t in ids:
        assert [a.attempt for a in attempts[t]] == runs[t], (t, attempts[t])
        assert attempts[t][-1].status is TaskStatus.SUCCEEDED
    assert sorted(len(r) for r in runs.values()) == [1, 1, 1, 1, 1, 2]


def _worker_processes(pid: int) -> list[int]:
    """Dask worker processes (multiprocessing ``spawn_main`` children) of process ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(stat[1]) == pid and b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_a_worker_killed_while_the_cluster_starts_does_not_stop_the_run(tmp_path: Path) -> None:
    """distributed fails the LocalCluster's start ("Nanny failed to start") when a
    worker process is killed meanwhile: the engine starts it again and the run
    completes (it was an internal error, exit 70, leaving the execution to resume)."""
    (tmp_path / "g.yaml").write_text(
        "name: quick\ntasks:\n  - {id: mark, agent: shell, with: {command: 'touch ran.txt'}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    tag = f"CONNECTSW_TEST_TAG={tmp_path.name}"
    env.update(CONNECTSW_DATA_DIR=str(tmp_path / "data"), CONNECTSW_DASK__N_WORKERS="2")
    env.update([tag.split("=", 1)])
    owner = subprocess.Popen(
        [sys.executable, "-m", "connectsw.cli.main", "run", "g.yaml", "--yes", "--json"]
        + ["-w", str(tmp_path / "ws")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (workers := _worker_processes(owner.pid)):
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "the cluster never started"
            time.sleep(0.005)
        time.sleep(0.2)  # the worker is starting (importing distributed)
        os.kill(workers[0], signal.SIGKILL)
        out, err = owner.communicate(timeout=240)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    assert owner.returncode == 0, err
    assert json.loads(out)["status"] == "completed"
    assert (tmp_path / "ws" / "ran.txt").exists()
    assert "Traceback" not in err
    # Nothing of either cluster is left (worker processes end within ~0.1 s of their nanny).
    deadline = time.monotonic() + 10
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left


def _tagged(tag: str) -> list[int]:
    """Live processes whose environment holds ``tag``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if tag.encode() in environ and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found
