"""Process-isolated agents: ending an attempt ends every process it started.

Found by new-user trial 5 (item 2): an agent that started a ``setsid`` child left
it running past the attempt's timeout, beside the next attempts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.core.errors import TaskTimeout
from connectsw.core.isolation import run_isolated
from connectsw.core.models import Request, TaskSpec


def _ctx(workspace: Path, timeout: float) -> TaskContext:
    return TaskContext(
        execution_id="exec_iso",
        task=TaskSpec(id="t1", agent="leaver"),
        workspace=workspace,
        request=Request(command="run"),
        attempt=1,
        timeout=timeout,
    )


def _with_marker(marker: str) -> list[int]:
    """Pids whose command line holds ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


class Leaver:
    """Starts a setsid child that appends to ``log`` every 0.2 s, then blocks."""

    name = "leaver"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def run(self, ctx: TaskContext) -> AgentOutput:
        script = f"while :; do echo {self.marker} >> log; sleep 0.2; done"
        subprocess.Popen(["setsid", "sh", "-c", script], cwd=ctx.workspace)
        if ctx.timeout:
            time.sleep(30)
        return AgentOutput()


@pytest.mark.parametrize("ends", ["timeout", "success"])
def test_the_attempts_setsid_descendants_end_with_it(tmp_path: Path, ends: str) -> None:
    marker = f"leftover-{uuid.uuid4().hex}"
    ctx = _ctx(tmp_path, 1.0 if ends == "timeout" else 0)
    try:
        started = time.monotonic()
        if ends == "timeout":
            with pytest.raises(TaskTimeout):
                run_isolated(
                    Leaver(marker),
                    ctx,
                    deadline=started + 1.0,
                    should_stop=None,
                    on_spawn=None,
                    grace=1.0,
                )
        else:
            run_isolated(
                Leaver(marker), ctx, deadline=None, should_stop=None, on_spawn=None, grace=1.0
            )
        assert time.monotonic() - started < 10
        log = tmp_path / "log"
        deadline = time.monotonic() + 3
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        size = log.stat().st_size if log.exists() else 0
        time.sleep(1.0)
        assert (log.stat().st_size if log.exists() else 0) == size  # nothing writes any more
        assert _with_marker(marker) == []
    finally:
        for pid in _with_marker(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_the_deadline_holds_while_the_worker_is_stopped(tmp_path: Path) -> None:
    # Trial 5 item 1, for process-isolated agents: only the (stopped) worker kept the deadline.
    owner = textwrap.dedent(
        """
        import time
        from pathlib import Path
        from connectsw.agents.base import AgentOutput, TaskContext
        from connectsw.core.errors import TaskTimeout
        from connectsw.core.isolation import run_isolated
        from connectsw.core.models import Request, TaskSpec

        class Late:
            def run(self, ctx):
                Path("started").write_text("x")
                time.sleep(4)
                Path("late.txt").write_text("x")
                return AgentOutput()

        ctx = TaskContext(
            execution_id="e", task=TaskSpec(id="t", agent="late"), workspace=Path("."),
            request=Request(command="run"), attempt=1, timeout=1.0,
        )
        try:
            run_isolated(Late(), ctx, deadline=time.monotonic() + 1.0, should_stop=None,
                         on_spawn=None, grace=0.5)
        except TaskTimeout as exc:
            print("timeout", exc)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", owner], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        end = time.monotonic() + 20
        while not (tmp_path / "started").exists():
            assert time.monotonic() < end and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(5.0)  # past the deadline and past the agent's own end
        assert not (tmp_path / "late.txt").exists()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=30)
    assert out.startswith("timeout timed out after 1s"), out
