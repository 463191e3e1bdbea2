"""Commands a rule keeps running while it checks them (a service, a browser).

:class:`Background` runs a command through :func:`connectsw.core.supervisor.run`
in a thread: the command gets its own process group, its output is kept bounded,
and :meth:`Background.stop` (or the gate's cancel, its lease lost, or the deadline)
ends the whole group (SIGTERM, grace, SIGKILL) before it returns.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from connectsw.core import supervisor
from connectsw.gates.base import GateContext

#: Reason given to the supervisor when the rule is done with the command.
DONE = "done"
OUTPUT_LIMIT = 32 * 1024


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Background:
    """A supervised command that runs until :meth:`stop` (a context manager)."""

    def __init__(
        self,
        ctx: GateContext,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        deadline: float,
        grace: float = 2.0,
    ) -> None:
        self.ctx = ctx
        self.argv = list(argv)
        self.env = dict(env)
        self.deadline = deadline
        self.grace = grace
        self.outcome: supervisor.Outcome | None = None
        self.error: supervisor.SupervisorError | None = None
        self._done = threading.Event()
        self._spawned = threading.Event()
        self.ref: supervisor.ProcessRef | None = None
        self._thread = threading.Thread(target=self._run, name="gate-background", daemon=True)

    def _should_stop(self) -> str | None:
        if self._done.is_set():
            return DONE
        return self.ctx.stopped()

    def _on_spawn(self, ref: supervisor.ProcessRef) -> None:
        self.ref = ref
        self._spawned.set()
        if self.ctx.on_spawn is not None:
            self.ctx.on_spawn(ref)

    def _run(self) -> None:
        try:
            self.outcome = supervisor.run(
                self.argv,
                cwd=self.ctx.workspace,
                env=self.env,
                deadline=self.deadline,
                should_stop=self._should_stop,
                on_spawn=self._on_spawn,
                output_limit=OUTPUT_LIMIT,
                grace=self.grace,
            )
        except supervisor.SupervisorError as exc:
            self.error = exc
        except Exception as exc:  # on_spawn raised (lease lost): the group is ended
            self.error = supervisor.SupervisorError(str(exc), type(exc).__name__)
        finally:
            self._spawned.set()

    def start(self) -> Background:
        """Start the command; raises SupervisorError if it cannot be started."""
        self._thread.start()
        self._spawned.wait()
        if self.error is not None:
            raise self.error
        return self

    @property
    def running(self) -> bool:
        """True while the command's group has not ended."""
        return self._thread.is_alive()

    def stop(self) -> supervisor.Outcome | None:
        """End the command's whole process group and wait for it; its outcome."""
        self._done.set()
        self._thread.join()
        return self.outcome

    def output(self) -> str:
        """What the command wrote (bounded), once it has ended."""
        return self.outcome.output if self.outcome is not None else ""

    def __enter__(self) -> Background:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http(
    url: str, deadline: float, alive: Any, stopped: Any = None, interval: float = 0.1
) -> tuple[int | None, str]:
    """Poll ``url`` until it answers 2xx, ``alive()`` is False, ``stopped()`` gives a reason or
    the deadline passes. Returns (HTTP status or None, what happened)."""
    last = "no answer"
    # Straight to the loopback service: an http_proxy in the environment is not asked.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if stopped is not None and (reason := stopped()):
            return None, f"stopped: {reason}"
        try:
            with opener.open(url, timeout=min(2.0, interval * 10)) as response:
                return int(response.status), f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            exc.close()
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = type(exc).__name__ if not str(exc) else str(getattr(exc, "reason", exc))
        if not alive():
            return None, "the command exited"
        time.sleep(interval)
    return None, f"no 2xx answer ({last})"


def tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` non-blank lines of ``text``."""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def shown(argv: Sequence[str]) -> str:
    """A command as a shell would show it."""
    import shlex

    return " ".join(shlex.quote(str(a)) for a in argv)


def run_step(
    ctx: GateContext,
    argv: Sequence[str] | str,
    timeout: float,
    *,
    cwd: Any = None,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
) -> tuple[supervisor.Outcome | None, str]:
    """Run one command of a rule under the supervisor, at most ``timeout`` seconds.

    Returns (outcome, "") when it ran to its end, else (None, why not): it could
    not start, timed out, or was stopped (cancel, lease lost) — its whole process
    group ended in every case.
    """
    label = argv if isinstance(argv, str) else shown(argv)
    try:
        outcome = supervisor.run_for(
            ctx,
            argv,
            cwd=cwd or ctx.workspace,
            env=env if env is not None else supervisor.agent_env(),
            shell=shell,
            deadline=time.monotonic() + timeout,
            output_limit=OUTPUT_LIMIT,
        )
    except supervisor.SupervisorError as exc:
        return None, f"cannot run {label}: {exc.reason}"
    if outcome.stopped == "timeout":
        return None, f"{label} timed out after {timeout:g}s\n{tail(outcome.output)}".strip()
    if outcome.stopped:
        return None, f"{label} stopped: {outcome.stopped}"
    return outcome, ""
