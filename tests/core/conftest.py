"""Test agents registered as a plugin, for the engine and runner tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectsw import hookimpl
from connectsw.agents.base import Agent, AgentOutput, TaskContext
from connectsw.core.engine import Engine
from connectsw.core.errors import TaskError
from connectsw.core.models import Execution, Request
from connectsw.plugins.manager import get_plugin_manager
from connectsw.plugins.registry import get_registries, reset_registries


class SleepAgent(Agent):
    """Sleeps ``with.seconds`` and reports when it ran."""

    name = "sleep"

    def run(self, ctx: TaskContext) -> AgentOutput:
        start = time.monotonic()
        time.sleep(float(ctx.inputs.get("seconds", 0.1)))
        return AgentOutput(outputs={"start": start, "end": time.monotonic()})


class FlakyAgent(Agent):
    """Fails until attempt ``with.succeed_on``."""

    name = "flaky"

    def run(self, ctx: TaskContext) -> AgentOutput:
        if ctx.attempt < int(ctx.inputs.get("succeed_on", 2)):
            raise TaskError(f"flaky failure on attempt {ctx.attempt}")
        return AgentOutput(summary=f"ok on attempt {ctx.attempt}")


class BoomAgent(Agent):
    """Crashes with an unexpected exception."""

    name = "boom"

    def run(self, ctx: TaskContext) -> AgentOutput:
        raise RuntimeError("kaboom")


class NotesAgent(Agent):
    """Writes the request, the feedback and its upstream ids to ``with.path``."""

    name = "notes"

    def run(self, ctx: TaskContext) -> AgentOutput:
        body = "\n".join(
            [f"request: {ctx.request.text}", f"round: {ctx.round}", f"attempt: {ctx.attempt}"]
            + [f"feedback: {f}" for f in ctx.feedback]
            + [f"upstream: {k}={v['status']}" for k, v in sorted(ctx.upstream.items())]
        )
        path = str(ctx.inputs.get("path", f"notes/{ctx.task.id}.txt"))
        return AgentOutput(summary="noted", artifacts=[ctx.write(path, body + "\n")])


class BlockerAgent(Agent):
    """Logs its start, then blocks (ignoring ctx.timeout), then writes ``with.late``."""

    name = "blocker"

    def run(self, ctx: TaskContext) -> AgentOutput:
        with open(ctx.workspace / "blocker.log", "a") as fh:
            fh.write(f"{ctx.attempt} start {time.time():.6f}\n")
        time.sleep(float(ctx.inputs.get("seconds", 3)))  # a library call that ignores deadlines
        (ctx.workspace / str(ctx.inputs.get("late", "late.txt"))).write_text("x")
        with open(ctx.workspace / "blocker.log", "a") as fh:
            fh.write(f"{ctx.attempt} end {time.time():.6f}\n")
        return AgentOutput()


def escape(how: str, command: str, cwd: Path, mark: str) -> None:
    """Start ``sh -c command`` in ``cwd`` outside the caller's process group and session,
    with ``ISO_MARK=mark`` in its environment (so a test finds it in /proc):
    ``setsid`` (the setsid(1) program), ``new-session`` (``start_new_session=True``) or
    ``daemon`` (a double fork whose middle process exits, as daemonising libraries do)."""
    env = {**os.environ, "ISO_MARK": mark}
    if how == "setsid":
        subprocess.Popen(["setsid", "sh", "-c", command], cwd=cwd, env=env)
    elif how == "new-session":
        subprocess.Popen(["sh", "-c", command], cwd=cwd, env=env, start_new_session=True)
    elif how == "daemon":
        middle = os.fork()
        if middle == 0:
            try:
                os.setsid()
                if os.fork() == 0:
                    os.chdir(cwd)
                    os.execve("/bin/sh", ["sh", "-c", command], env)
            finally:
                os._exit(0)
        os.waitpid(middle, 0)
    else:
        raise ValueError(how)


class EscaperAgent(Agent):
    """Starts ``sleep with.after; touch with.late`` so that it leaves the agent's group and
    session (``with.how``, see :func:`escape`; marked ``ISO_MARK=with.mark``), writes its
    pid to ``agent.pid``, then blocks ``with.block`` s, ignoring ctx.timeout."""

    name = "escaper"

    def run(self, ctx: TaskContext) -> AgentOutput:
        late = str(ctx.inputs.get("late", "late.txt"))
        after = float(ctx.inputs.get("after", 1.5))
        how = str(ctx.inputs.get("how", "setsid"))
        escape(how, f"sleep {after}; touch {late}", ctx.workspace, str(ctx.inputs["mark"]))
        (ctx.workspace / "agent.pid").write_text(str(os.getpid()))
        time.sleep(float(ctx.inputs.get("block", 10)))
        return AgentOutput()


class _Unserialisable:
    pass


class BadResultAgent(Agent):
    """Returns a value JSON cannot represent in ``outputs`` (runs in a forked process)."""

    name = "bad-result"

    def run(self, ctx: TaskContext) -> AgentOutput:
        return AgentOutput(outputs={"thing": _Unserialisable()})


class BadResultThreadAgent(BadResultAgent):
    """The same, run in the worker's thread."""

    name = "bad-result-thread"
    isolation = "thread"


class NonFiniteAgent(Agent):
    """Returns NaN and infinity in ``outputs`` (trial 5, item 8: stored as null)."""

    name = "non-finite"

    def run(self, ctx: TaskContext) -> AgentOutput:
        return AgentOutput(outputs={"x": float("nan"), "deep": {"y": [1.0, float("inf")]}})


class NonFiniteThreadAgent(NonFiniteAgent):
    name = "non-finite-thread"
    isolation = "thread"


class SurrogateErrorAgent(Agent):
    """Raises a TaskError whose message holds a lone surrogate (trial 5, item 11:
    reported as a worker death)."""

    name = "surrogate-error"

    def run(self, ctx: TaskContext) -> AgentOutput:
        raise TaskError("bad \udcff thing")


class SurrogateErrorThreadAgent(SurrogateErrorAgent):
    name = "surrogate-error-thread"
    isolation = "thread"


class SurrogateCrashAgent(Agent):
    """Raises any exception with a lone surrogate in its message."""

    name = "surrogate-crash"

    def run(self, ctx: TaskContext) -> AgentOutput:
        raise ValueError("crash \udcff here")


class SurrogateCrashThreadAgent(SurrogateCrashAgent):
    name = "surrogate-crash-thread"
    isolation = "thread"


class ExitsThreadAgent(Agent):
    """Calls ``sys.exit`` in ``run`` (as a library's CLI entry point does), in a thread."""

    name = "exits-thread"
    isolation = "thread"

    def run(self, ctx: TaskContext) -> AgentOutput:
        sys.exit(0)


class ExitsAgent(ExitsThreadAgent):
    name = "exits"
    isolation = "process"


TEST_AGENTS = (
    ExitsThreadAgent,
    ExitsAgent,
    NonFiniteAgent,
    NonFiniteThreadAgent,
    SurrogateErrorAgent,
    SurrogateErrorThreadAgent,
    SurrogateCrashAgent,
    SurrogateCrashThreadAgent,
    SleepAgent,
    FlakyAgent,
    BoomAgent,
    NotesAgent,
    BlockerAgent,
    EscaperAgent,
    BadResultAgent,
    BadResultThreadAgent,
)


@pytest.fixture
def test_agents() -> Iterator[None]:
    """Register the test agents as a plugin for this test."""
    plugin = types.ModuleType("connectsw_test_agents")

    @hookimpl
    def register_agents(register: Callable[[Any], None]) -> None:
        for cls in TEST_AGENTS:
            register(cls())

    plugin.register_agents = register_agents  # type: ignore[attr-defined]
    pm = get_plugin_manager()
    pm.register(plugin, name="test-agents")
    reset_registries()
    yield
    pm.unregister(name="test-agents")
    reset_registries()


@pytest.fixture
def engine(engine: Engine, test_agents: None) -> Engine:
    """The shared engine fixture, seeing the test agents."""
    engine.registries = get_registries()
    return engine


@pytest.fixture
def submit_graph(engine: Engine, tmp_path: Path) -> Callable[..., Execution]:
    """Write a task-graph file and submit it; returns the pending execution."""

    def submit(graph: dict[str, Any], workspace: Path | None = None) -> Execution:
        path = tmp_path / f"{graph.get('name', 'g')}.yaml"
        path.write_text(yaml.safe_dump(graph))
        return engine.submit(Request(command="run", args=[str(path)]), workspace or tmp_path / "ws")

    return submit
