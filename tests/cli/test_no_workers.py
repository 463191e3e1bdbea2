"""A Dask cluster without workers is reported, never waited on for ever (issue 5, kind 1).

Found by the new-user trial (trial 6): with an external scheduler that had no worker,
``run`` printed the plan and ``stage.started``, then nothing, past the task's timeout.
A real ``dask scheduler`` process, and a real ``dask worker`` killed mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

GRAPH = "name: t\ntasks:\n  - {id: a, agent: shell, timeout: 5, with: {command: 'echo hi'}}\n"


def test_run_on_a_scheduler_without_workers_is_refused_before_storing(
    cli: Cli, bare_scheduler: str
) -> None:
    (cli.cwd / "t.yaml").write_text(GRAPH)
    cli.env["CONNECTSW_DASK__SCHEDULER_ADDRESS"] = bare_scheduler
    cli.env["CONNECTSW_DASK__WORKER_WAIT"] = "1"
    started = time.monotonic()
    res = cli("run", "t.yaml", "--yes", "-w", "ws", timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert res.error_line() == f"Error: no Dask workers at {bare_scheduler} after 1 s"
    assert res.stdout == "" and time.monotonic() - started < 30
    del cli.env["CONNECTSW_DASK__SCHEDULER_ADDRESS"]
    assert cli("status", "--json", ok=True).json() == []  # nothing stored, nothing to resume


@pytest.fixture
def worker(bare_scheduler: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One ``dask worker`` process (one thread, no nanny) of ``bare_scheduler``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", bare_scheduler]
        + ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


def test_a_cluster_that_loses_every_worker_fails_the_stage_within_the_wait(
    cli: Cli, bare_scheduler: str, worker: subprocess.Popen[bytes]
) -> None:
    """The attempt its worker died in fails; the retry finds no worker: after
    ``dask.worker_wait`` seconds the stage fails with that cause, in one line."""
    (cli.cwd / "t.yaml").write_text(
        "name: t\ntasks:\n"
        "  - {id: a, agent: shell, retries: 2, with: {command: 'touch ../started; sleep 60'}}\n"
        "  - {id: b, agent: noop, needs: [a]}\n"
    )
    cli.env["CONNECTSW_DASK__SCHEDULER_ADDRESS"] = bare_scheduler
    cli.env["CONNECTSW_DASK__WORKER_WAIT"] = "2"
    run = cli.spawn("run", "t.yaml", "--yes", "--json", "-w", "ws")
    try:
        deadline = time.monotonic() + 60
        while not (cli.cwd / "started").exists():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert time.monotonic() - killed < 30
    assert run.returncode == ExitCode.FAILED, err
    view = cli.view(cli("status", "--json", ok=True).json()[0]["executionId"])
    cause = f"no Dask workers at {bare_scheduler} after 2 s"
    assert view["status"] == "failed" and cause in view["error"], view
    assert "Traceback" not in err
