"""Run a command as a supervised process group: bounded output, deadlines, stop, no leftovers.

Every place that starts a command (shell agent, QA agent, gates, git helpers)
goes through :func:`run`. The command runs under :mod:`connectsw.core.reaper`,
a stdlib-only process that leads a new session and process group, so:

- a timeout, a stop request (cancel) or the caller's exception ends the whole
  group: SIGTERM, ``grace`` seconds, SIGKILL, before :func:`run` returns;
- the caller's death, even by SIGKILL, ends it too (the reaper's parent-death
  signal);
- what the command leaves behind when it exits (``sleep 30 &``) is ended as
  a CI runner ends a job's leftovers;
- output is read in chunks and only its head and tail are kept (memory stays
  flat whatever the command writes), decoded as UTF-8 with replacement.

:class:`ProcessRef` names a started group so another process can end a crashed
owner's leftovers with :func:`stop_group` before an attempt is re-run.

Written on the standard library: psutil would give process listing but not the
parent-death signal, and subprocess's ``preexec_fn`` is unsafe with threads.
The reaper adds one Python start (``-I -S``, no site packages) to every
command: about 17 ms on a 2-core Linux VM (a plain ``true`` takes 1 ms, the
supervised one 18 ms; Python's start is 11 ms of it).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectsw.core import reaper as reaper_module
from connectsw.core.errors import ConfigError, ConnectSWError

REAPER = Path(__file__).with_name("reaper.py")
POLL = 0.1
CHUNK = 64 * 1024
DEFAULT_OUTPUT_LIMIT = 64 * 1024
#: After the command's group has ended, how long to read what is left in the pipe (seconds).
DRAIN = 0.5

#: libpq's environment variables ("Environment Variables" in the PostgreSQL
#: documentation, libpq chapter, up to PostgreSQL 18): the engine's store
#: credentials and connection settings, kept from agents unless a task asks.
LIBPQ_ENV = frozenset(
    {
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGREQUIREAUTH",
        "PGCHANNELBINDING",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGAPPNAME",
        "PGSSLMODE",
        "PGREQUIRESSL",
        "PGSSLNEGOTIATION",
        "PGSSLCOMPRESSION",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLCERTMODE",
        "PGSSLROOTCERT",
        "PGSSLCRL",
        "PGSSLCRLDIR",
        "PGSSLSNI",
        "PGREQUIREPEER",
        "PGSSLMINPROTOCOLVERSION",
        "PGSSLMAXPROTOCOLVERSION",
        "PGMINPROTOCOLVERSION",
        "PGMAXPROTOCOLVERSION",
        "PGGSSENCMODE",
        "PGKRBSRVNAME",
        "PGGSSLIB",
        "PGGSSDELEGATION",
        "PGCONNECT_TIMEOUT",
        "PGCLIENTENCODING",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
        "PGOAUTHDEBUG",
        "PGDATESTYLE",
        "PGTZ",
        "PGGEQO",
        "PGSYSCONFDIR",
        "PGLOCALEDIR",
        "PGREALM",
    }
)
ENGINE_PREFIX = "CONNECTSW_"
#: The built-in LLM providers' usual key variables (agents/llm/openai.py and
#: anthropic.py ``default_key_env``): the engine's credentials, kept from agents.
PROVIDER_KEY_ENV = frozenset({"OPENAI_API_KEY", "ANTHROPIC_API_KEY"})


class SupervisorError(ConnectSWError):
    """A command could not be started (missing working directory or executable)."""

    code = "cannot_start"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: Why, without the command: "command not found", "not an executable file", ...
        self.reason = reason or message


@dataclass(frozen=True)
class ProcessRef:
    """A started process group: where, which leader, and when it started.

    ``start_time`` is field 22 of ``/proc/PID/stat`` (clock ticks since boot),
    so a reused pid is not mistaken for the leader; 0 where /proc does not
    exist. ``pid`` and ``pgid`` are 0 when nothing was started.
    """

    host: str
    pid: int
    pgid: int
    start_time: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"host", "pid", "pgid", "start_time"}``."""
        return {
            "host": self.host,
            "pid": self.pid,
            "pgid": self.pgid,
            "start_time": self.start_time,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcessRef:
        """The inverse of :meth:`to_dict`; KeyError/ValueError on a malformed dict."""
        return cls(
            host=str(d["host"]),
            pid=int(d["pid"]),
            pgid=int(d["pgid"]),
            start_time=int(d["start_time"]),
        )


@dataclass
class Outcome:
    """How a command ended.

    ``returncode`` is None when we stopped it (then ``stopped`` is ``"timeout"``
    or the reason ``should_stop`` returned); a command ended by a signal it
    did not get from us has ``128 + signal``. ``output`` is stdout and stderr
    interleaved, at most ``output_limit`` bytes of it (head and tail, with a
    ``[... N bytes omitted ...]`` line between); ``output_bytes`` is what the
    command wrote in all; ``duration`` is in seconds.
    """

    returncode: int | None
    stopped: str | None
    output: str
    output_bytes: int
    duration: float
    ref: ProcessRef
    #: stderr alone when run() was given ``split_stderr=True`` (then not in ``output``).
    stderr: str = ""

    def last_line(self) -> str:
        """The last non-blank line of the output ('' if none)."""
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def _hostname() -> str:
    return socket.gethostname()


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat; None if the process does not exist (0 without /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else _alive(pid)
    except (OSError, IndexError):
        return None
    return int(fields[19])  # fields[0] is field 3 (state)


def _alive(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) pids in process group ``pgid``; uses os.killpg without /proc."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def stop_group(ref: ProcessRef, grace: float = 2.0) -> bool:
    """End the process group ``ref`` names: SIGTERM, up to ``grace`` s, then SIGKILL.

    Only when ``ref.host`` is this host, the group still has live members and,
    if its leader is alive, the leader's start time is ``ref.start_time`` (a
    reused pid is left alone). Returns True if something was signalled. Used to
    end a crashed owner's leftovers before an attempt is re-run.
    """
    if ref.host != _hostname() or ref.pgid <= 1 or ref.pgid == os.getpgrp():
        return False
    started = _start_time(ref.pid)
    if started is not None and ref.start_time and started != ref.start_time:
        return False
    return _stop_pgid(ref.pgid, grace)


def _stop_pgid(pgid: int, grace: float) -> bool:
    """SIGTERM group ``pgid``, wait up to ``grace`` s for it to empty, SIGKILL the rest."""
    if not _group_members(pgid) or not _killpg(pgid, signal.SIGTERM):
        return False
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not _group_members(pgid):
            return True
        time.sleep(0.02)
    _killpg(pgid, signal.SIGKILL)
    end = time.monotonic() + 2.0
    while _group_members(pgid) and time.monotonic() < end:
        time.sleep(0.02)
    return True


def agent_env(
    extra: Mapping[str, str] | None = None, pass_env: Sequence[str] = ()
) -> dict[str, str]:
    """The environment for a command an agent starts.

    ``os.environ`` without the engine's own settings and credentials
    (:func:`engine_env_names`: every libpq variable (:data:`LIBPQ_ENV`, e.g.
    PGPASSWORD), every ``CONNECTSW_*`` variable and the LLM providers' key variables
    (:func:`llm_key_env`)), except those named in ``pass_env``; then ``extra`` on top (a
    task's ``env``). Other credentials (``AWS_*``, ``GITHUB_TOKEN`` ...) are not the
    engine's and are kept.
    """
    drop = engine_env_names(os.environ) - set(pass_env)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if extra:
        env.update(extra)
    return env


def engine_env_names(environ: Mapping[str, str]) -> set[str]:
    """The names in ``environ`` that hold the engine's own settings and credentials, which
    no agent's process or command gets unless a task asks (``pass_env``): libpq's
    (:data:`LIBPQ_ENV`), ``CONNECTSW_*`` and the LLM keys' (:func:`llm_key_env`). The one
    rule for shell tasks, gate commands (:func:`agent_env`) and process-isolated agents
    (:func:`hide_engine_env`). Issue 5, kind 8."""
    llm_keys = llm_key_env()
    return {k for k in environ if k in LIBPQ_ENV or k in llm_keys or k.startswith(ENGINE_PREFIX)}


_HELD_ENV: dict[str, str] = {}
"""The engine's variables :func:`hide_engine_env` took out of this process's environment."""


def engine_env_to_hide() -> frozenset[str]:
    """The names :func:`hide_engine_env` takes out (:func:`engine_env_names` of this
    process's environment), with the settings read and kept
    (:func:`~connectsw.conf.settings.get_settings`) for :func:`engine_getenv`.

    Called before the fork of a process-isolated agent (core/isolation.py), so that the
    agent's process imports and reads nothing of ConnectSW's before its ``run``.
    """
    from connectsw.conf.settings import get_settings

    with contextlib.suppress(ConfigError):
        get_settings()
    return frozenset(engine_env_names(os.environ))


def hide_engine_env(names: Iterable[str]) -> None:
    """Take ``names`` (:func:`engine_env_to_hide`: the engine's settings and credentials)
    out of this process's ``os.environ`` (and so of every process it starts): called in
    a process-isolated agent's own process before its ``run`` (core/isolation.py).

    The values are held in this process's memory for the engine's own code in it
    (:func:`engine_getenv`: a built-in provider's key), not in its environment.
    """
    for name in names:
        value = os.environ.pop(name, None)
        if value is not None:
            _HELD_ENV[name] = value


def engine_getenv(name: str) -> str:
    """The engine's environment variable ``name`` (``""`` when unset): from
    ``os.environ``, else as held by :func:`hide_engine_env`."""
    return os.environ.get(name) or _HELD_ENV.get(name, "")


def llm_key_env() -> frozenset[str]:
    """Names of the environment variables holding the engine's LLM keys: the built-in
    providers' usual ones (:data:`PROVIDER_KEY_ENV`) and every ``[llm.NAME]
    api_key_env`` of the settings (read when settings can be; an unreadable config
    leaves the usual ones)."""
    from connectsw.conf.settings import LLMEndpointSettings, get_settings

    names = set(PROVIDER_KEY_ENV)
    try:
        llm = get_settings().llm
    except ConfigError:
        return frozenset(names)
    for field in type(llm).model_fields:
        section = getattr(llm, field)
        if isinstance(section, LLMEndpointSettings) and section.api_key_env:
            names.add(section.api_key_env)
    return frozenset(names)


class _Capture:
    """Head and tail of a byte stream, at most ``limit`` bytes in all."""

    def __init__(self, limit: int) -> None:
        self.head_cap = limit // 2
        self.tail_cap = limit - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data or not self.tail_cap:
            return
        if len(data) >= self.tail_cap:
            self.tail[:] = data[-self.tail_cap :]
            return
        self.tail += data
        if len(self.tail) > 2 * self.tail_cap:
            del self.tail[: len(self.tail) - self.tail_cap]

    def text(self) -> str:
        """The kept output as text; NUL characters (no store can hold them) become U+FFFD."""
        tail = self.tail[-self.tail_cap :] if self.tail_cap else b""
        omitted = self.total - len(self.head) - len(tail)
        head = self.head.decode("utf-8", errors="replace")
        if omitted <= 0:
            text = (bytes(self.head) + bytes(tail)).decode("utf-8", errors="replace")
        else:
            middle = f"\n[... {omitted} bytes omitted ...]\n"
            text = head + middle + bytes(tail).decode("utf-8", errors="replace")
        return text.replace("\x00", "\ufffd")


def _resolve(
    args: Sequence[str] | str, shell: bool, cwd: Path, env: Mapping[str, str]
) -> list[str]:
    if shell:
        command = args if isinstance(args, str) else " ".join(args)
        argv = ["/bin/sh", "-c", command]
    else:
        if isinstance(args, str):
            raise SupervisorError("a command given as one string needs shell=True")
        argv = [str(a) for a in args]
        if not argv:
            raise SupervisorError("empty command")
    if not cwd.is_dir():
        what = "is not a directory" if cwd.exists() else "does not exist"
        reason = f"working directory {cwd} {what}"
        raise SupervisorError(f"cannot run {argv[0]}: {reason}", reason)
    exe = argv[0]
    if os.sep in exe:
        path = exe if os.path.isabs(exe) else os.path.join(cwd, exe)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise SupervisorError(
                f"cannot run {exe}: not an executable file", "not an executable file"
            )
    elif shutil.which(exe, path=env.get("PATH", os.defpath)) is None:
        raise SupervisorError(f"cannot run {exe}: command not found", "command not found")
    return argv


def _stop_reason(
    deadline: float | None, should_stop: Callable[[], str | None] | None
) -> str | None:
    if deadline is not None and time.monotonic() >= deadline:
        return "timeout"
    return should_stop() if should_stop is not None else None


def run(
    args: Sequence[str] | str,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
    deadline: float | None = None,
    should_stop: Callable[[], str | None] | None = None,
    on_spawn: Callable[[ProcessRef], None] | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    grace: float = 2.0,
    stdin: bytes | None = None,
    split_stderr: bool = False,
) -> Outcome:
    """Run ``args`` in a process group of its own and wait until the group has ended.

    ``deadline`` is a :func:`time.monotonic` value (None: no deadline);
    ``should_stop`` is polled about every 0.1 s and a non-None reason stops the
    group; ``on_spawn`` is called once with the group's :class:`ProcessRef`
    right after it exists. Stopping is SIGTERM to the group, ``grace`` seconds,
    SIGKILL. ``env`` defaults to ``os.environ`` (pass :func:`agent_env` for
    agents); ``stdin`` bytes are written to the command's stdin (else
    /dev/null). ``split_stderr`` keeps stderr apart in ``Outcome.stderr``
    (bounded by ``output_limit`` too), for commands whose stdout is parsed.
    Raises :class:`SupervisorError` if the command cannot be started; an
    exception in the caller (or ``on_spawn``) ends the group first.
    """
    environ = dict(os.environ if env is None else env)
    argv = _resolve(args, shell, Path(cwd), environ)
    started = time.monotonic()
    host = _hostname()
    reason = _stop_reason(deadline, should_stop)
    if reason is not None:
        return Outcome(None, reason, "", 0, 0.0, ProcessRef(host, 0, 0, 0))
    lc_ctype = environ.get("LC_CTYPE")
    reaper = [
        sys.executable,
        "-I",
        "-S",
        str(REAPER),
        str(os.getpid()),
        repr(float(grace)),
        "-" if lc_ctype is None else f"={lc_ctype}",
        "-" if deadline is None or not math.isfinite(deadline) else repr(float(deadline)),
        "--",
    ]
    try:
        proc = subprocess.Popen(
            [*reaper, *argv],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        reason = str(exc.strerror or exc)
        raise SupervisorError(f"cannot run {argv[0]}: {reason}", reason) from None
    ref = ProcessRef(host, proc.pid, proc.pid, _start_time(proc.pid) or 0)
    capture = _Capture(output_limit)
    errors = _Capture(output_limit)
    try:
        if on_spawn is not None:
            on_spawn(ref)
        stopped = _supervise(proc, capture, errors, stdin, deadline, should_stop, grace)
    except BaseException:
        _end(proc, grace)
        raise
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
    code = proc.returncode
    if (
        stopped is None
        and code == reaper_module.DEADLINE_EXIT
        and deadline is not None
        and time.monotonic() >= deadline
    ):
        stopped = "timeout"  # the reaper ended the group itself (its owner was stopped)
    if stopped is None and code is not None and code < 0:
        # The reaper itself was killed (not by us, e.g. `kill -9 $PPID` in the command): its
        # group may be left behind. A group id is not reused while the group has members.
        _stop_pgid(ref.pgid, grace)
        code = 128 - code
    return Outcome(
        returncode=None if stopped else code,
        stopped=stopped,
        output=capture.text(),
        output_bytes=capture.total,
        duration=time.monotonic() - started,
        ref=ref,
        stderr=errors.text() if split_stderr else "",
    )


def _end(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Ask the reaper to end its group; SIGKILL the group if it has not after ``grace`` + 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace + 5.0)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # The reaper's pid is reaped now; if members remain, the group id is still theirs.
    if _group_members(proc.pid):
        _killpg(proc.pid, signal.SIGKILL)


def open_pidfd(pid: int) -> int | None:
    """A pidfd of child ``pid`` (readable once it exits: ``select`` wakes without
    polling), or None where Linux < 5.3 or not Linux. The caller closes it."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _supervise(
    proc: subprocess.Popen[bytes],
    capture: _Capture,
    errors: _Capture,
    stdin: bytes | None,
    deadline: float | None,
    should_stop: Callable[[], str | None] | None,
    grace: float,
) -> str | None:
    """Read output until the reaper exits; stop it when asked. The stop reason, or None."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    reading: dict[int, _Capture] = {proc.stdout.fileno(): capture}
    if proc.stderr is not None:
        reading[proc.stderr.fileno()] = errors
    for fd in reading:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, "out")
    pidfd = open_pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        if pending:
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "in")
        else:
            proc.stdin.close()
    stopped: str | None = None
    try:
        while proc.poll() is None:
            reason = _stop_reason(deadline, should_stop)
            if reason is not None:
                stopped = reason
                _end(proc, grace)
                break
            wait = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            for key, _ in sel.select(wait):
                if key.data == "out":
                    if not _read(key.fd, reading[key.fd]):
                        sel.unregister(key.fd)
                        del reading[key.fd]
                elif key.data == "in":
                    pending = _write(proc, pending)
                    if not pending:
                        sel.unregister(key.fd)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()  # type: ignore[union-attr]
                elif key.data == "exit":
                    sel.unregister(key.fd)
        if pidfd is not None and pidfd in sel.get_map():
            sel.unregister(pidfd)
        # The group has ended; read what is still in the pipe (a process that left the
        # group may hold it open: stop after DRAIN seconds).
        end = time.monotonic() + DRAIN
        while reading and time.monotonic() < end:
            for key, _ in sel.select(max(0.0, end - time.monotonic())):
                if key.data == "out" and not _read(key.fd, reading[key.fd]):
                    sel.unregister(key.fd)
                    del reading[key.fd]
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    return stopped


def _read(fd: int, capture: _Capture) -> bool:
    """Read what is available into ``capture``; False at end of file."""
    for _ in range(64):
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        capture.add(data)
    return True


def _write(proc: subprocess.Popen[bytes], pending: memoryview) -> memoryview:
    assert proc.stdin is not None
    try:
        n = os.write(proc.stdin.fileno(), pending[:CHUNK])
    except BlockingIOError:
        return pending
    except (BrokenPipeError, OSError):
        n = len(pending)
    return pending[n:]


def run_for(ctx: Any, args: Sequence[str] | str, **kw: Any) -> Outcome:
    """:func:`run` for an agent's task: the deadline, stop check and spawn hook of ``ctx``.

    Reads ``ctx.deadline`` (a monotonic time; else ``ctx.timeout`` seconds from
    now), ``ctx.should_stop`` and ``ctx.on_spawn`` when the context has them;
    ``cwd`` defaults to ``ctx.workspace``. Keyword arguments override them.
    """
    deadline = getattr(ctx, "deadline", None)
    timeout = getattr(ctx, "timeout", None)
    if deadline is None and timeout is not None:
        deadline = time.monotonic() + float(timeout)
    kw.setdefault("deadline", deadline)
    kw.setdefault("should_stop", getattr(ctx, "should_stop", None))
    kw.setdefault("on_spawn", getattr(ctx, "on_spawn", None))
    kw.setdefault("cwd", ctx.workspace)
    return run(args, **kw)
