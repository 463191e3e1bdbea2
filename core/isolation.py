"""Run an in-process agent where it can be stopped: a forked child in its own process group.

A thread cannot be killed, so an agent whose ``run`` blocks past its deadline
(a library call that ignores ``ctx.timeout``) would keep running beside the
next attempt. Agents with ``isolation = "process"`` (the default for agents
that do not declare otherwise) therefore run in a child forked from the
worker: a new session (so the whole group can be signalled), a parent-death
signal (so it dies with the worker), its result serialised to JSON inside the
child (so a value JSON cannot represent fails that attempt only). The parent
waits with the attempt's deadline and stop reasons; on either it ends the
group (TERM, grace, KILL) before the attempt is recorded.

Written here rather than with ``multiprocessing``: its ``fork`` context adds a
pickling round trip, a resource tracker and no process-group control; the
``spawn`` and ``forkserver`` contexts would re-import the agent's plugin,
which a plugin registered at run time (tests, notebooks) does not survive.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.core.errors import ConnectSWError, TaskError, TaskTimeout, one_line
from connectsw.core.supervisor import ProcessRef, stop_group
from connectsw.plugins.manager import describe_error

#: Largest result (JSON bytes) a child may send back.
MAX_RESULT_BYTES = 16 * 1024 * 1024
POLL_SECONDS = 0.05
GRACE_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


class AttemptStopped(ConnectSWError):
    """The attempt was stopped for ``reason`` (``timeout`` or a monitor reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalise(out: Any) -> AgentOutput:
    """An agent's return value as an :class:`AgentOutput` whose JSON is checked.

    Raises :class:`TaskError` when the value cannot be represented in JSON
    (e.g. a custom object in ``outputs``): the attempt fails, not the store.
    """
    if out is None:
        return AgentOutput()
    try:
        output = AgentOutput.model_validate(out) if isinstance(out, dict) else out
        if not isinstance(output, AgentOutput):
            raise TaskError(f"agent returned {type(out).__name__}, not AgentOutput")
        if "\\u0000" in output.model_dump_json():
            raise TaskError("agent result holds a NUL character, which the store cannot keep")
    except TaskError:
        raise
    except Exception as exc:
        raise TaskError(f"agent result is not valid JSON output: {one_line(exc)}") from None
    return output


def _child(agent: Any, ctx: TaskContext, write_fd: int, parent: int) -> None:
    """In the forked child: run the agent, send its JSON result, exit (never returns)."""
    code = 0
    try:
        os.setsid()
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before the signal was armed
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # What the agent prints goes to stderr: stdout holds only the command's output.
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        ctx.should_stop = None  # the parent watches; nested commands die with this group
        ctx.on_spawn = None
        try:
            output = normalise(agent.run(ctx))
            if output.usage is None and ctx.usage:  # the parent cannot see ctx's
                output.usage = ctx.usage
            payload: dict[str, Any] = {"ok": output.model_dump(mode="json")}
        except TaskError as exc:
            payload = {"error": one_line(exc), "type": type(exc).__name__}
        except BaseException as exc:  # report everything the agent raises, as a line
            payload = {
                "error": describe_error(exc, where=True),  # Type: message (file.py:LINE)
                "type": type(exc).__name__,
                "crashed": True,
            }
        data = json.dumps(payload).encode()
        view = memoryview(data)
        while view:
            n = os.write(write_fd, view)
            view = view[n:]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_isolated(
    agent: Any,
    ctx: TaskContext,
    *,
    deadline: float | None,
    should_stop: Callable[[], str | None] | None,
    on_spawn: Callable[[ProcessRef], None] | None,
    grace: float = GRACE_SECONDS,
) -> AgentOutput:
    """Run ``agent.run(ctx)`` in a forked child; return its output.

    ``deadline`` is a ``time.monotonic()`` value. Raises :class:`TaskTimeout`
    at the deadline, :class:`AttemptStopped` on a stop reason (after the child's
    process group has ended), :class:`TaskError` when the agent failed or died.
    """
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _child(agent, ctx, write_fd, parent)
    os.close(write_fd)
    chunks: list[bytes] = []
    size = 0
    stopped: str | None = None
    status: int | None = None
    try:
        ref = _ref(pid)
        if on_spawn is not None:
            on_spawn(ref)
        open_pipe = True
        while True:
            if open_pipe:
                ready, _, _ = select.select([read_fd], [], [], POLL_SECONDS)
                if ready:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        open_pipe = False
                    else:
                        size += len(chunk)
                        if size > MAX_RESULT_BYTES:
                            stopped = "too large"
                        else:
                            chunks.append(chunk)
            else:
                time.sleep(POLL_SECONDS)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
                if open_pipe:  # drain what the child wrote before exiting
                    while chunk := os.read(read_fd, 65536):
                        chunks.append(chunk)
                break
            if stopped is None and deadline is not None and time.monotonic() >= deadline:
                stopped = "timeout"
            if stopped is None and should_stop is not None:
                stopped = should_stop()
            if stopped is not None:
                stop_group(ref, grace)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # in case it had not made its group yet
                _, status = os.waitpid(pid, 0)
                break
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_fd)
    if stopped == "timeout":
        raise TaskTimeout(f"timed out after {ctx.timeout:g}s" if ctx.timeout else "timed out")
    if stopped == "too large":
        raise TaskError(f"agent result is larger than {MAX_RESULT_BYTES} bytes")
    if stopped is not None:
        raise AttemptStopped(stopped, f"stopped: {stopped}")
    return _result(b"".join(chunks), status)


def _ref(pid: int) -> ProcessRef:
    """The forked child's group (it makes itself leader of a new session)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            start_time = int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        start_time = 0
    return ProcessRef(host=socket.gethostname(), pid=pid, pgid=pid, start_time=start_time)


def _result(data: bytes, status: int | None) -> AgentOutput:
    if not data:
        if status is not None and os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            raise TaskError(f"agent process was killed by {sig}")
        code = os.WEXITSTATUS(status) if status is not None else "?"
        raise TaskError(f"agent process exited with {code} without a result")
    payload = json.loads(data)
    if "ok" in payload:
        return AgentOutput.model_validate(payload["ok"])
    if payload.get("crashed"):
        raise AgentCrashed(payload.get("error") or "agent failed")
    raise TaskError(payload.get("error") or "agent failed")


class AgentCrashed(TaskError):
    """The agent's code raised something other than a :class:`TaskError` (a bug of
    the agent, not a failure it reported); the message is ``Type: message (file.py:LINE)``."""
