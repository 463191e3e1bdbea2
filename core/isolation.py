"""Run an in-process agent where it can be stopped: a forked child in its own process group.

A thread cannot be killed, so an agent whose ``run`` blocks past its deadline
(a library call that ignores ``ctx.timeout``) would keep running beside the
next attempt. Agents with ``isolation = "process"`` (the default for agents
that do not declare otherwise) therefore run in a process forked from the
worker, under a keeper:

- the keeper is forked from the worker; it leads a new session (so the whole
  group can be signalled), gets SIGTERM when the worker dies (parent-death
  signal, plus a poll of its parent), and is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), as :mod:`connectsw.core.reaper` is for a
  command: a descendant that leaves the group (``setsid``, a daemon's double
  fork) is re-parented to it and still ended. It runs no agent code: it only
  waits, so a signal always reaches a process that acts on it;
- the keeper forks the agent's process, in its group, which runs
  ``agent.run`` and sends its result serialised to JSON (so a value JSON
  cannot represent fails that attempt only);
- when the agent's process exits, on SIGTERM (the worker's stop), the worker's
  death or the attempt's deadline (which so holds while the worker is stopped),
  the keeper ends the group and every descendant re-parented to it (TERM,
  grace, KILL; :func:`connectsw.core.reaper.watch`) and exits.

The worker waits with the attempt's deadline and stop reasons; on either it
asks the keeper to end everything and waits for it (SIGKILL to the group if
it has not after the grace and 5 s) before the attempt is recorded (issue 5,
kind 1). Only the keeper, a fresh single-threaded process, is a subreaper and
reaps with ``waitpid(-1)``: the worker's other threads' children are not
touched.

Written here rather than with ``multiprocessing``: its ``fork`` context adds a
pickling round trip, a resource tracker and no process-group control; the
``spawn`` and ``forkserver`` contexts would re-import the agent's plugin,
which a plugin registered at run time (tests, notebooks) does not survive.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import math
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from connectsw.agents.base import AgentOutput, TaskContext
from connectsw.core import reaper
from connectsw.core.errors import ConnectSWError, TaskError, TaskTimeout, one_line
from connectsw.core.supervisor import (
    ProcessRef,
    engine_env_to_hide,
    hide_engine_env,
    open_pidfd,
)
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
    (e.g. a custom object in ``outputs``, or a float NaN or infinity, which
    pydantic would silently write as ``null``): the attempt fails, not the store.
    """
    if out is None:
        return AgentOutput()
    if (
        type(out) is AgentOutput
        and not out.outputs
        and not out.artifacts
        and out.usage is None
        and isinstance(out.summary, str)
        and out.summary.isascii()
        and "\x00" not in out.summary
    ):
        return out  # nothing in it JSON could not represent (a no-op agent's answer)
    try:
        output = AgentOutput.model_validate(out) if isinstance(out, dict) else out
        if not isinstance(output, AgentOutput):
            raise TaskError(f"agent returned {type(out).__name__}, not AgentOutput")
        where = _non_finite(output.model_dump(mode="python"), "")
        if where:
            raise TaskError(
                f"agent result holds {where}, which JSON cannot represent"
                " (NaN and infinities are not JSON numbers)"
            )
        if "\\u0000" in output.model_dump_json():
            raise TaskError("agent result holds a NUL character, which the store cannot keep")
    except TaskError:
        raise
    except Exception as exc:
        raise TaskError(f"agent result is not valid JSON output: {one_line(exc)}") from None
    return output


def finish_imports() -> None:
    """Return once no other thread is importing a module (call it just before a fork).

    A forked child inherits the lock of every module another thread was importing at
    the fork, held for ever: an import of that module in the child (an agent's lazy
    import, or ConnectSW's own) waits for ever. The chaos trial's resume hung so, its
    agent's process waiting on ``connectsw.conf.settings``. Importing a module that is
    still initialising takes its lock, so this waits for each such import to end.
    """
    for name, module in list(sys.modules.items()):
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            with contextlib.suppress(Exception):  # its import failed: nothing is held
                importlib.import_module(name)


def _non_finite(value: Any, path: str) -> str:
    """``"nan at outputs.x[2]"`` for the first float NaN or infinity in ``value``
    (dicts, lists and tuples walked); ``""`` when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} at {path or 'the top'}"
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return ""
    for sub_path, sub in items:
        found = _non_finite(sub, sub_path)
        if found:
            return found
    return ""


def _keeper(
    work: Callable[[], Any],
    write_fd: int,
    parent: int,
    grace: float,
    deadline: float | None,
    hidden: frozenset[str],
) -> None:
    """In the forked child: lead a new session as a child subreaper, fork the work's
    process, end everything when it exits or is stopped (never returns)."""
    code = 1
    try:
        os.setsid()
        if not reaper.arm(parent):  # the worker died before the signal was armed
            os._exit(128 + signal.SIGTERM)
        keeper = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(work, write_fd, keeper, hidden)
        os.close(write_fd)
        code = reaper.watch(parent, pid, grace, deadline)
    except BaseException:
        with contextlib.suppress(BaseException):
            reaper.end_all(os.getpid(), grace)
    finally:
        os._exit(code)


def _child(work: Callable[[], Any], write_fd: int, keeper: int, hidden: frozenset[str]) -> None:
    """In the work's process (the keeper's child): call ``work``, send its JSON result,
    exit (never returns)."""
    code = 0
    try:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != keeper:  # the keeper died before the signal was armed
            os._exit(1)
        for sig in reaper.WATCHED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, reaper.WATCHED)
        # What the code prints goes to stderr: stdout holds only the command's output.
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        try:
            # The code and every process it starts get no engine credential (the store
            # URL, PGPASSWORD, the LLM keys): the rule of shell tasks' and gates' commands.
            debug = bool(os.environ.get("CONNECTSW_DEBUG"))  # before it is hidden
            hide_engine_env(hidden)
            payload: dict[str, Any] = {"ok": work()}
        except TaskError as exc:
            payload = {"error": one_line(exc), "type": type(exc).__name__}
        except BaseException as exc:  # report everything the code raises, as a line
            payload = {
                "error": describe_error(exc, where=True),  # Type: message (file.py:LINE)
                "type": type(exc).__name__,
                "crashed": True,
            }
            if debug:  # the plugin author's traceback, as in-process code gives it
                payload["traceback"] = "".join(traceback.format_exception(exc))
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
    """Run ``agent.run(ctx)`` in a forked child (under a keeper, see the module); return
    its output.

    ``deadline`` is a ``time.monotonic()`` value. Raises :class:`TaskTimeout`
    at the deadline, :class:`AttemptStopped` on a stop reason, :class:`TaskError`
    when the agent failed or died; in each case after the agent's process, its
    group and every descendant that left the group have ended (``grace`` s
    between TERM and KILL). Descendants left behind by an agent that returned
    are ended the same way before this returns.
    """

    def work() -> Any:  # in the agent's process
        ctx.should_stop = None  # the parent watches; nested commands die with this group
        ctx.on_spawn = None
        output = normalise(agent.run(ctx))
        if output.usage is None and ctx.usage:  # the parent cannot see ctx's
            output.usage = ctx.usage
        return output.model_dump(mode="json")

    timeout = f"timed out after {ctx.timeout:g}s" if ctx.timeout else "timed out"
    data = run_forked(
        work,
        deadline=deadline,
        should_stop=should_stop,
        on_spawn=on_spawn,
        grace=grace,
        timeout_message=timeout,
    )
    return AgentOutput.model_validate(data)


def run_forked(
    work: Callable[[], Any],
    *,
    deadline: float | None,
    should_stop: Callable[[], str | None] | None,
    on_spawn: Callable[[ProcessRef], None] | None,
    grace: float = GRACE_SECONDS,
    timeout_message: str = "timed out",
    what: str = "agent",
    hide_env: bool = True,
) -> Any:
    """Call ``work()`` in a forked child under a keeper (see the module); return the value
    it returned, which must be JSON-serialisable (a plugin's agent run, a gate rule's
    evaluation).

    Raises :class:`TaskTimeout` (``timeout_message``) at ``deadline``,
    :class:`AttemptStopped` on a stop reason of ``should_stop``, :class:`TaskError` when
    ``work`` raised a TaskError or its process died (:class:`AgentCrashed` when it raised
    anything else; ``what`` names it in the messages); in each case after its process,
    its group and every descendant that left the group have ended. ``hide_env=False``
    keeps the engine's environment in the child (a plugin LLM provider's call, which
    ran in the worker's thread with it and needs its key).
    """
    # read here: the child imports nothing of ours
    hidden = engine_env_to_hide() if hide_env else frozenset()
    finish_imports()
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    # The keeper takes its signals with sigtimedwait, so no thread of it may take them
    # instead: a library's at-fork handler may start one in the child (lancedb's
    # runtime does), which inherits the mask of the thread that forks. Blocked here,
    # before the fork, they stay blocked in every thread of the keeper; a SIGTERM the
    # keeper sends its own group would otherwise kill it before it ends what left the
    # group. Restored in this thread once forked.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, reaper.WATCHED)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _keeper(work, write_fd, parent, grace, deadline, hidden)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(write_fd)
    chunks: list[bytes] = []
    size = 0
    stopped: str | None = None
    status: int | None = None
    exited = open_pidfd(pid)
    try:
        ref = _ref(pid)
        if on_spawn is not None:
            on_spawn(ref)
        open_pipe = True
        while True:
            # The keeper's pidfd wakes us when it exits (no polling delay on every agent).
            fds = [read_fd] if open_pipe else []
            if exited is not None:
                fds.append(exited)
            if fds:
                ready, _, _ = select.select(fds, [], [], POLL_SECONDS)
            else:
                ready = []
                time.sleep(POLL_SECONDS)
            if read_fd in ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    open_pipe = False
                else:
                    size += len(chunk)
                    if size > MAX_RESULT_BYTES:
                        stopped = "too large"
                    else:
                        chunks.append(chunk)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
                if open_pipe:  # drain what the child wrote before exiting
                    while chunk := os.read(read_fd, 65536):
                        chunks.append(chunk)
                if (
                    deadline is not None
                    and os.WIFEXITED(raw)
                    and os.WEXITSTATUS(raw) == reaper.DEADLINE_EXIT
                    and time.monotonic() >= deadline
                ):
                    stopped = "timeout"  # the keeper kept the deadline (we were stopped?)
                break
            if stopped is None and deadline is not None and time.monotonic() >= deadline:
                stopped = "timeout"
            if stopped is None and should_stop is not None:
                stopped = should_stop()
            if stopped is not None:
                status = _end(pid, grace)
                break
    except BaseException:
        if status is None:
            _end(pid, grace)
        raise
    finally:
        os.close(read_fd)
        if exited is not None:
            os.close(exited)
    if stopped == "timeout":
        raise TaskTimeout(timeout_message)
    if stopped == "too large":
        raise TaskError(f"{what} result is larger than {MAX_RESULT_BYTES} bytes")
    if stopped is not None:
        raise AttemptStopped(stopped, f"stopped: {stopped}")
    return _result(b"".join(chunks), status, what)


def _end(pid: int, grace: float) -> int:
    """Ask the keeper ``pid`` to end everything (TERM, ``grace`` s, KILL: it is the one that
    sees re-parented descendants); SIGKILL its group if it has not after ``grace`` + 5 s.
    Returns its wait status, once it is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace + 5.0
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # in case it had not made its group yet
    return os.waitpid(pid, 0)[1]


def _ref(pid: int) -> ProcessRef:
    """The keeper's group (it makes itself leader of a new session)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            start_time = int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        start_time = 0
    return ProcessRef(host=socket.gethostname(), pid=pid, pgid=pid, start_time=start_time)


def _result(data: bytes, status: int | None, what: str = "agent") -> Any:
    if not data:
        if status is not None and os.WIFSIGNALED(status):
            raise TaskError(f"{what} process was killed by {_signame(os.WTERMSIG(status))}")
        code = os.WEXITSTATUS(status) if status is not None else "?"
        if isinstance(code, int) and code > 128 and code - 128 in signal.valid_signals():
            # The keeper exits with 128 + the signal that ended the agent's process.
            raise TaskError(f"{what} process was killed by {_signame(code - 128)}")
        raise TaskError(f"{what} process exited with {code} without a result")
    payload = json.loads(data)
    if "ok" in payload:
        return payload["ok"]
    if payload.get("crashed"):
        crashed = AgentCrashed(payload.get("error") or f"{what} failed")
        crashed.traceback = payload.get("traceback")
        raise crashed
    raise TaskError(payload.get("error") or f"{what} failed")


def _signame(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 40`` for a number with no name (real-time signals)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class AgentCrashed(TaskError):
    """The agent's code raised something other than a :class:`TaskError` (a bug of
    the agent, not a failure it reported); the message is ``Type: message (file.py:LINE)``.
    ``traceback``: its traceback's text, with ``CONNECTSW_DEBUG`` set (else None)."""

    traceback: str | None = None
