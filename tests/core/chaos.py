"""Chaos trials: run a 30-task graph, kill something at a random moment, resume, check.

Used by ``tests/core/test_chaos.py`` (a few trials in CI) and ``bench/chaos.py``
(the nightly size: 20 trials per store). Each trial runs the real CLI in a
subprocess on a real 2-process LocalCluster and, at a random moment, either
kills the owner (``kill -9``), kills a Dask worker (``kill -9``), or stops the
owner past its lease (``SIGSTOP``), takes it over from another process and then
wakes it (``SIGCONT``). It then resumes until the execution completes.

Every attempt of every task logs ``start``, ``beat`` (every 50 ms while it
works) and ``end`` lines with its attempt number to one file (``O_APPEND``).
The checks, per trial:

- no task recorded as succeeded runs again (no attempt starts after it);
- no two attempts of one task overlap in time (an attempt's last line comes
  before the next attempt's start);
- attempt numbers are never reused, and an attempt that started but never
  ended is recorded as interrupted (or failed, for a worker that died) in the
  store, with the next attempt under a new number;
- no process of the run outlives it (processes are tagged by an environment
  variable and looked for in ``/proc``);
- the execution completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("kill-owner", "kill-worker", "stop-owner")
TAG_VAR = "CHAOS_TRIAL_TAG"
HEARTBEAT = 0.2
LEASE = 2.0

PLUGIN = '''
"""In-process chaos agent: logs its attempts' start, beats and end."""
import os, time
from connectsw import hookimpl
from connectsw.agents.base import Agent, AgentOutput


def line(ctx, what):
    path = os.path.join(str(ctx.workspace), "attempts.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    text = f"{ctx.task.id} {ctx.round} {ctx.attempt} {what} {time.time():.6f} {os.getpid()}"
    os.write(fd, (text + "\\n").encode())
    os.close(fd)


class ChaosWork(Agent):
    name = "chaos-work"
    description = "Works for with.seconds, logging; fails on attempts listed in with.fail_on."

    def run(self, ctx):
        line(ctx, "start")
        end = time.monotonic() + float(ctx.inputs.get("seconds", 0.3))
        while time.monotonic() < end:
            time.sleep(0.05)
            line(ctx, "beat")
        if ctx.attempt in ctx.inputs.get("fail_on", []):
            line(ctx, "end")
            raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
        line(ctx, "end")
        return AgentOutput(summary="worked", outputs={"attempt": ctx.attempt})


@hookimpl
def register_agents(register):
    register(ChaosWork())
'''

SHELL = (
    'echo "$CONNECTSW_TASK_ID 0 $CONNECTSW_ATTEMPT start $(date +%s.%N) $$" >> attempts.log; '
    "i=0; while [ $i -lt {beats} ]; do sleep 0.05; "
    'echo "$CONNECTSW_TASK_ID 0 $CONNECTSW_ATTEMPT beat $(date +%s.%N) $$" >> attempts.log; '
    "i=$((i+1)); done; {extra}"
    'echo "$CONNECTSW_TASK_ID 0 $CONNECTSW_ATTEMPT end $(date +%s.%N) $$" >> attempts.log'
)


def graph() -> dict[str, Any]:
    """30 tasks: shell and in-process agents, retries, timeouts, a checkpoint and a gate."""
    tasks: list[dict[str, Any]] = []
    for i in range(15):  # stage 1: a fan-out / fan-in of shell and in-process tasks
        needs = [f"a{i - 1}"] if i % 5 else []
        if i % 2:
            tasks.append(
                {
                    "id": f"a{i}",
                    "agent": "shell",
                    "needs": needs,
                    "retries": 1,
                    "timeout": 30,
                    "with": {"command": SHELL.format(beats=4 + i % 4, extra="")},
                }
            )
        else:
            tasks.append(
                {
                    "id": f"a{i}",
                    "agent": "chaos-work",
                    "needs": needs,
                    "retries": 2,
                    "timeout": 30,
                    "with": {"seconds": 0.2 + 0.05 * (i % 4), "fail_on": [1] if i == 4 else []},
                }
            )
    # A task that times out on its first attempt (timeout 1 s, works 4 s) then succeeds.
    tasks.append(
        {
            "id": "slowfirst",
            "agent": "shell",
            "retries": 2,
            "timeout": 1,
            "with": {
                "command": SHELL.format(
                    beats=3, extra='if [ "$CONNECTSW_ATTEMPT" = 1 ]; then sleep 4; fi; '
                )
            },
        }
    )
    stage1 = [t["id"] for t in tasks]
    for i in range(14):  # stage 2, after the checkpoint
        needs = [f"b{i - 1}"] if i % 4 else []
        agent = "chaos-work" if i % 3 == 0 else "shell"
        spec: dict[str, Any] = {"id": f"b{i}", "agent": agent, "needs": needs, "retries": 1}
        if agent == "shell":
            spec["with"] = {"command": SHELL.format(beats=3 + i % 5, extra="")}
        else:
            spec["with"] = {"seconds": 0.25}
        tasks.append(spec)
    return {
        "name": "chaos",
        "tasks": tasks,
        "checkpoints": [
            {"after": stage1, "question": "Stage 1 done. Go on?", "gates": ["tests-pass"]}
        ],
    }


@dataclass
class Trial:
    """One trial's outcome: what was done and what the checks found."""

    kind: str
    delay: float
    execution_id: str = ""
    problems: list[str] = field(default_factory=list)
    resumes: int = 0
    seconds: float = 0.0


def install_plugin(root: Path) -> Path:
    """A plugin distribution (module + dist-info with an entry point) importable from ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "connectsw_chaos.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "connectsw_chaos-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: connectsw-chaos\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[connectsw]\nchaos = connectsw_chaos\n")
    return root


def environment(tmp: Path, store_url: str, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env.update(
        {
            "PYTHONPATH": str(install_plugin(tmp / "site")),
            "CONNECTSW_DATA_DIR": str(tmp / "data"),
            "CONNECTSW_STORE__URL": store_url,
            "CONNECTSW_ENGINE__HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "CONNECTSW_ENGINE__LEASE_TIMEOUT": str(LEASE),
            "CONNECTSW_ENGINE__RETRY_BACKOFF": "0.05",
            "CONNECTSW_GATES__TEST_COMMAND": f"{sys.executable} -m unittest discover -s tests",
            TAG_VAR: tag,
        }
    )
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "connectsw.cli.main", *args]


def tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``TAG_VAR=tag`` (zombies excluded)."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def children(pid: int, direct: bool = False) -> list[int]:
    """All descendants of ``pid`` (its children only, with ``direct``)."""
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids[ppid].append(int(entry))
    if direct:
        return kids.get(pid, [])
    out, todo = [], [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def dask_workers(owner: int) -> list[int]:
    """The owner's Dask worker processes: multiprocessing's ``spawn_main`` children, not
    its resource tracker (killing that one, a third of the time, killed no worker) nor
    an agent's forked child (which has its worker's command line)."""
    found = []
    for pid in children(owner, direct=True):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"spawn_main" in part for part in cmd):
            found.append(pid)
    return found


def run_trial(tmp: Path, store_url: str, kind: str, delay: float, seed: int = 0) -> Trial:
    """Run one trial in ``tmp``; returns what its checks found (empty ``problems``: passed)."""
    trial = Trial(kind=kind, delay=delay)
    started = time.monotonic()
    tag = uuid.uuid4().hex
    ws = tmp / "ws"
    (ws / "tests").mkdir(parents=True, exist_ok=True)
    (ws / "tests" / "test_ok.py").write_text(
        "import unittest\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        pass\n"
    )
    (ws / "tests" / "__init__.py").write_text("")
    graph_file = tmp / "chaos.json"
    graph_file.write_text(json.dumps(graph()))
    env = environment(tmp, store_url, tag)
    before = _execution_ids(env, tmp)  # a shared store may hold earlier trials' executions
    log = tmp / "owner.log"
    with open(log, "ab") as out:
        owner = subprocess.Popen(
            cli("run", str(graph_file), "--yes", "--workspace", str(ws)),
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    try:
        trial.execution_id = _wait_execution(env, tmp, owner, before)
        time.sleep(delay)
        _inject(kind, owner, env, tmp, trial)
    finally:
        if owner.poll() is None:
            try:
                owner.wait(timeout=120)
            except subprocess.TimeoutExpired:
                owner.kill()
                owner.wait()
                trial.problems.append("the owner did not end")
    for _ in range(8):  # resume until it completes
        state = _status(env, tmp, trial.execution_id)
        if state.get("status") == "completed":
            break
        trial.resumes += 1
        try:
            subprocess.run(
                cli("resume", trial.execution_id, "--yes", "--json"),
                env=env,
                cwd=tmp,
                capture_output=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:  # its processes are ended with the run's
            trial.problems.append("a resume did not end within 120 s")
            break
    state = _status(env, tmp, trial.execution_id)
    if state.get("status") != "completed":
        trial.problems.append(f"execution ended {state.get('status')}: {state.get('error')}")
    deadline = time.monotonic() + 10
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        trial.problems.append(f"processes outlived the run: {_describe(left)}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    trial.problems += check_attempts(ws / "attempts.log", store_url, trial.execution_id)
    trial.seconds = time.monotonic() - started
    return trial


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids[:5]:
        try:
            out.append(f"{pid}:{Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}")
        except OSError:
            out.append(str(pid))
    return ", ".join(out)


def _execution_ids(env: dict[str, str], tmp: Path) -> set[str]:
    proc = subprocess.run(
        cli("status", "--json", "--limit", "1000"), env=env, cwd=tmp, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return set()
    return {str(row["executionId"]) for row in json.loads(proc.stdout or "[]")}


def _wait_execution(
    env: dict[str, str], tmp: Path, owner: subprocess.Popen[bytes], before: set[str]
) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = _execution_ids(env, tmp) - before
        if new:
            return new.pop()
        if owner.poll() is not None:
            raise AssertionError(f"the owner exited {owner.returncode} before starting")
        time.sleep(0.2)
    raise AssertionError("no execution appeared")


def _status(env: dict[str, str], tmp: Path, execution_id: str) -> dict[str, Any]:
    proc = subprocess.run(
        cli("status", execution_id, "--no-resume", "--json"),
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
    )
    try:
        return dict(json.loads(proc.stdout))
    except json.JSONDecodeError:
        return {"status": "unknown", "error": proc.stderr.strip()}


def _inject(
    kind: str, owner: subprocess.Popen[bytes], env: dict[str, str], tmp: Path, trial: Trial
) -> None:
    if owner.poll() is not None:
        return  # it finished first: nothing to kill
    if kind == "kill-owner":
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    elif kind == "kill-worker":
        workers = dask_workers(owner.pid)
        if workers:
            os.kill(random.choice(workers), signal.SIGKILL)
        owner.wait(timeout=180)
    elif kind == "stop-owner":
        owner.send_signal(signal.SIGSTOP)
        try:
            time.sleep(LEASE + 1.0)
            taker = subprocess.Popen(
                cli("resume", trial.execution_id, "--yes", "--json"),
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # the taker claims and starts re-running
        finally:
            owner.send_signal(signal.SIGCONT)
        owner.wait(timeout=120)
        try:
            taker.wait(timeout=120)
        except subprocess.TimeoutExpired:  # its processes are ended with the run's
            trial.problems.append("the resume that took the execution over did not end")
            taker.kill()
            taker.wait()
    else:
        raise ValueError(kind)


def check_attempts(log: Path, store_url: str, execution_id: str) -> list[str]:
    """The promises, checked on the attempts' own log and the store's records."""
    from connectsw.core.models import TaskStatus
    from connectsw.core.stores import open_store

    problems: list[str] = []
    lines: dict[tuple[str, int], dict[int, list[tuple[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    if log.exists():
        for raw in log.read_text().splitlines():
            parts = raw.split()
            if len(parts) < 5:
                continue
            task, rnd, attempt, what, when = (
                parts[0],
                int(parts[1]),
                int(parts[2]),
                parts[3],
                float(parts[4]),
            )
            lines[(task, rnd)][attempt].append((what, when))
    store = open_store(store_url)
    try:
        for (task, rnd), attempts in sorted(lines.items()):
            order = sorted(attempts)
            for a, b in zip(order, order[1:], strict=False):
                last_a = max(t for _, t in attempts[a])
                start_b = (
                    min(t for w, t in attempts[b] if w == "start")
                    if any(w == "start" for w, _ in attempts[b])
                    else min(t for _, t in attempts[b])
                )
                if last_a > start_b:
                    problems.append(
                        f"{task}: attempt {a} still ran {last_a - start_b:.3f}s"
                        f" after attempt {b} started"
                    )
            for n in order:
                if sum(w == "start" for w, _ in attempts[n]) > 1:
                    problems.append(f"{task}: attempt {n} started twice")
            records = {
                r.attempt: r for r in store.task_attempts(execution_id, task) if r.round == rnd
            }
            succeeded = [n for n, r in records.items() if r.status is TaskStatus.SUCCEEDED]
            if len(succeeded) > 1:
                problems.append(f"{task}: succeeded {len(succeeded)} times")
            if succeeded and any(n > succeeded[0] for n in order):
                problems.append(f"{task}: ran again after attempt {succeeded[0]} succeeded")
            for n in order:
                rec = records.get(n)
                ended = any(w == "end" for w, _ in attempts[n])
                if rec is None:
                    problems.append(f"{task}: attempt {n} ran but has no record")
                elif not ended and rec.status is TaskStatus.SUCCEEDED:
                    problems.append(f"{task}: attempt {n} recorded succeeded but never ended")
                elif not ended and rec.status not in (
                    TaskStatus.INTERRUPTED,
                    TaskStatus.FAILED,
                    TaskStatus.CANCELLED,
                ):
                    problems.append(
                        f"{task}: attempt {n} was cut off but is recorded {rec.status.value}"
                    )
    finally:
        store.close()
    return problems
