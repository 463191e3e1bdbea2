"""The Dask cluster stages run on: an in-process LocalCluster or an existing scheduler.

Dask must never re-run a task on its own (the engine's retries decide, issue 5):
the LocalCluster's scheduler is created with ``allowed-failures`` 0, and an external
scheduler must have been started that way (checked on connect).

An external scheduler address is checked before any connection (``tcp://HOST:PORT``
or ``tls://HOST:PORT``), then probed with a plain socket: distributed's own
handshake has no deadline for the peer's first message and trusts its first eight
bytes as a length, so a plain HTTP server makes it wait for minutes and one that
answers ``HTTP/1.1 400`` makes it allocate ~5 exabytes (``MemoryError``). The probe
reads the scheduler's greeting (which a scheduler sends at once on accept) with a
deadline and checks that it is framed as Dask frames it. That probe is written here:
distributed offers no bounded way to ask "is a Dask scheduler there?".

A ``tls://`` address needs Dask's TLS client configuration
(``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``); the probe then
completes the TLS handshake with it, within the same deadline, before reading the
greeting: a scheduler that speaks plain TCP, or a port where nothing answers TLS, is
one line instead of distributed's ``TypeError`` or an endless wait.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from distributed import Client, LocalCluster

from connectsw.conf.settings import DaskSettings
from connectsw.core.errors import ConfigError, ConnectSWError, one_line

SCHEMES = ("tcp", "tls")
"""Address schemes ConnectSW accepts for an external scheduler."""

START_HINT = "start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 dask scheduler"
"""How to start a scheduler that never re-runs a task on its own."""

log = logging.getLogger("connectsw.cluster")

START_TRIES = 3
"""How many times a LocalCluster that fails to start (a worker killed meanwhile) is started."""

_MAX_GREETING = 1 << 20
"""Bytes: a scheduler's first message (its handshake) is far smaller."""


def quiet_dask_logs() -> None:
    """Keep distributed's informational logs out of a user's terminal.

    The scheduler's errors too: a worker that died, a broadcast that failed on it.
    The engine reports what they mean for the execution, in one line, itself.
    """
    for name in ("distributed", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("distributed.scheduler").setLevel(logging.CRITICAL)


def parse_scheduler_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``tcp://HOST:PORT``, ``tls://HOST:PORT`` or ``HOST:PORT``.

    Raises:
        ConfigError: anything else (no scheme guessing, no default port). The
            message does not repeat the address.
    """
    expected = "expected tcp://HOST:PORT or tls://HOST:PORT"
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme not in SCHEMES:
        raise ConfigError(
            f"dask.scheduler_address is not a Dask scheduler address ({expected});"
            " a dashboard's http:// address will not do"
        )
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"dask.scheduler_address has an invalid port ({expected}, PORT 1-65535)"
        ) from None
    host = parts.hostname or ""
    if (
        not host
        or any(c.isspace() for c in host)
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or "[" in rest.split("]")[-1]
    ):
        raise ConfigError(f"dask.scheduler_address is not a Dask scheduler address ({expected})")
    if not port:
        raise ConfigError(f"dask.scheduler_address needs a port ({expected})")
    return scheme, host, port


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes | None:
    """``size`` bytes, or what came before the peer closed; None at the deadline."""
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            return None
        if not chunk:
            break
        data += chunk
    return data


def probe_scheduler(
    host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Check within ``timeout`` seconds that a Dask scheduler answers at ``host:port``.

    Connects a TCP socket (and completes a TLS handshake with ``ssl_context`` if
    given) and reads the greeting a scheduler sends at once: an 8-byte
    little-endian length (at most 1 MiB here) then a frame count (1-64). Nothing
    is sent but the TLS handshake.

    Raises:
        ConfigError: unreachable, silent past the deadline, closed, no TLS handshake
            (a plain TCP scheduler at a ``tls://`` address), or not framed as Dask
            frames its messages (an HTTP server...).
    """
    where = f"the Dask scheduler at {host}:{port}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise ConfigError(f"cannot reach {where}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ConfigError(f"cannot reach {where}: {exc.strerror or one_line(exc)}") from None
    if ssl_context is not None:
        sock = _tls_handshake(sock, ssl_context, host, where, timeout, deadline)
    with sock:
        header = _recv_exactly(sock, 16, deadline)
    if header is None:
        raise ConfigError(
            f"{where} accepted the connection but sent no Dask greeting within {timeout:g} s;"
            " is it a Dask scheduler (not a web server or another service)?"
        )
    if header.startswith(b"HTTP/"):
        raise ConfigError(f"{where} answered as an HTTP server, not as a Dask scheduler")
    if len(header) < 16:
        raise ConfigError(f"{where} closed the connection without a Dask greeting")
    length, frames = struct.unpack("<QQ", header)
    if not (16 <= length <= _MAX_GREETING and 1 <= frames <= 64):
        raise ConfigError(f"{where} answered, but not as a Dask scheduler does")


def _tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    host: str,
    where: str,
    timeout: float,
    deadline: float,
) -> ssl.SSLSocket:
    """``sock`` after a TLS handshake finished before ``deadline`` (closed on failure)."""
    plain = f"{where} did not complete a TLS handshake"
    hint = "; if it speaks plain TCP, use tcp://"
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return context.wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        sock.close()
        raise ConfigError(f"{plain} within {timeout:g} s{hint}") from None
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ConfigError(
            f"{where}: its TLS certificate was refused: {exc.verify_message}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise ConfigError(f"{plain} ({reason}){hint}") from None


TLS_FILES = ("ca-file", "client.cert", "client.key")
"""Dask's TLS client settings that name files (under ``distributed.comm.tls.``)."""


def _check_tls_files() -> None:
    """Each of Dask's TLS files that is set names a readable file (or is PEM text).

    distributed takes a value that is no file for the PEM text itself, so a missing
    file read "IsADirectoryError: Is a directory"; the setting is named instead.

    Raises:
        ConfigError: ``distributed.comm.tls.KEY PATH: not found`` (or unreadable, a
            directory), as core/textfiles.py words it.
    """
    import dask

    from connectsw.core import textfiles

    for key in TLS_FILES:
        value = dask.config.get(f"distributed.comm.tls.{key}", None)
        if not value or "-----BEGIN" in str(value):
            continue
        path = Path(str(value)).expanduser()
        try:
            textfiles.read_bytes(path, 0)
        except textfiles.TextFileError as exc:
            raise ConfigError(f"distributed.comm.tls.{key} {path}: {exc}") from None


def tls_client_context() -> ssl.SSLContext:
    """The TLS context Dask's configuration gives clients (``distributed.comm.tls.*``).

    Raises:
        ConfigError: no TLS configuration (a ``tls://`` address needs at least
            ``distributed.comm.tls.ca-file``), a file it names that cannot be read
            (:func:`_check_tls_files`), or one that cannot be loaded.
    """
    from distributed.security import Security

    _check_tls_files()
    try:
        context = Security().get_connection_args("client")["ssl_context"]
    except Exception as exc:  # an invalid certificate or key file
        raise ConfigError(
            "the Dask TLS configuration (distributed.comm.tls.ca-file, .client.cert,"
            f" .client.key) cannot be used: {one_line(exc, typed=True)}"
        ) from None
    if not isinstance(context, ssl.SSLContext):
        raise ConfigError(
            "dask.scheduler_address is a tls:// address but Dask has no TLS client"
            " configuration: set distributed.comm.tls.ca-file, .client.cert and .client.key"
            " (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE), or use tcp://"
        )
    return context


def _external(settings: DaskSettings) -> Client:
    scheme, host, port = parse_scheduler_address(settings.scheduler_address)
    timeout = settings.connect_timeout
    where = f"the Dask scheduler at {host}:{port}"
    context = tls_client_context() if scheme == "tls" else None
    probe_scheduler(host, port, timeout, context)
    address = f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"
    try:
        client = Client(address, timeout=timeout)
    except Exception as exc:  # the probe passed: whatever distributed raises is about the peer
        raise ConfigError(f"cannot connect to {where}: {one_line(exc, typed=True)}") from None
    try:
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    except Exception as exc:
        client.close()
        raise ConfigError(f"{where} did not answer a query: {one_line(exc, typed=True)}") from None
    if allowed != 0:
        client.close()
        raise ConfigError(
            f"{where} re-runs a task when a worker dies (allowed-failures {allowed});"
            f" ConnectSW needs 0: {START_HINT}"
        )
    try:
        client.wait_for_workers(1, timeout=settings.worker_wait)
    except TimeoutError:  # distributed's WorkerStartTimeoutError is one
        client.close()
        raise ConfigError(no_workers(address, settings.worker_wait)) from None
    return client


def no_workers(address: str, seconds: float) -> str:
    """``no Dask workers at ADDRESS after N s``: the address masked by core/redact.py."""
    from connectsw.core.redact import redact

    return f"no Dask workers at {redact(address)} after {seconds:g} s"


def connect(settings: DaskSettings) -> tuple[Client, LocalCluster | None]:
    """A client for the configured cluster, and the LocalCluster if one was started.

    Raises:
        ConfigError: a malformed scheduler address, a scheduler that cannot be
            reached within ``settings.connect_timeout`` seconds, something other
            than a Dask scheduler at that address, a ``tls://`` address without
            Dask's TLS configuration or where nothing completes a TLS handshake, or
            a scheduler that would re-run tasks itself (its ``allowed-failures`` is
            not 0), or one without a worker after ``settings.worker_wait`` seconds
            (:func:`no_workers`).
    """
    if settings.scheduler_address:
        return _external(settings), None
    import dask

    kwargs: dict[str, Any] = {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "processes": settings.processes,
        "dashboard_address": None,
        # No web dashboard at all: it would bind port 8787 and warn when that is taken.
        # allowed_failures 0: a task whose worker died is not re-run by Dask.
        "scheduler_kwargs": {
            "dashboard": False,
            "dashboard_address": "127.0.0.1:0",
            "allowed_failures": 0,
        },
    }
    if settings.processes:
        kwargs["silence_logs"] = logging.ERROR
    # Worker processes end with this process, even on SIGKILL: each one blocks a
    # thread on a pipe whose other end only this process holds and calls os._exit
    # at EOF (distributed.process.AsyncProcess; about 0.1 s, tests/core/test_cluster.py).
    # "daemon" also ends them at a normal exit. Commands a task started are not
    # covered: they outlive a killed worker unless their runner ends them.
    config = {"distributed.scheduler.allowed-failures": 0, "distributed.worker.daemon": True}
    with dask.config.set(config), _ctrl_c_deferred() as ctrl_c:
        cluster = _start_local(kwargs)
    if ctrl_c.pressed:  # during the startup: acted on now that the cluster is up
        cluster.close()
        raise KeyboardInterrupt
    return Client(cluster), cluster


def _start_local(kwargs: dict[str, Any]) -> LocalCluster:
    """A started LocalCluster, tried up to :data:`START_TRIES` times.

    A worker process killed while the cluster starts (an out-of-memory kill, or
    ``kill -9``) makes distributed raise "Nanny failed to start" (it closes what it
    had started): the next try starts fresh workers. Raises :class:`ConnectSWError`
    (one line) after the last try.
    """
    for tries in range(1, START_TRIES + 1):
        try:
            return LocalCluster(**kwargs)
        except Exception as exc:
            if tries == START_TRIES:
                raise ConnectSWError(
                    f"the local Dask cluster could not start ({START_TRIES} tries):"
                    f" {one_line(exc, typed=True)}"
                ) from None
            log.warning("the local Dask cluster failed to start, starting it again: %s", exc)
    raise AssertionError("unreachable")  # pragma: no cover


class _CtrlC:
    """Whether Ctrl-C (SIGINT) came while the cluster started."""

    pressed = False


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[_CtrlC]:
    """Start worker processes deaf to Ctrl-C, and note (not lose) one sent to this process.

    Ctrl-C in a terminal signals the whole foreground group: only this process should
    act on it, not the workers (~60 lines of tracebacks). A child inherits the signal
    mask of the thread that forks it, across exec; so SIGINT is blocked in this
    (main) thread meanwhile, and the threads the cluster creates (its event loop, the
    ones that spawn its workers) inherit that mask, as do the workers (for good:
    Python leaves a blocked signal blocked). multiprocessing blocks signals the same
    way around its resource tracker's start (bpo-33613), and unblocks them after it
    in the spawning thread: the tracker is started here first, so that never happens
    in the window. Commands run by tasks get the default mask back (the reaper).

    This process keeps a handler: a SIGINT, whether sent to the group or to this
    process alone, sets ``pressed`` instead of raising in the middle of the cluster's
    start; a pending one is handled when the main thread unblocks it. The caller
    acts on it once the cluster is up (SIG_IGN here, as before, lost a SIGINT sent to
    this process alone)."""
    seen = _CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    from multiprocessing import resource_tracker

    with contextlib.suppress(Exception):  # without it, multiprocessing starts it later
        resource_tracker.ensure_running()

    def note(signum: int, frame: Any) -> None:
        seen.pressed = True

    previous = signal.signal(signal.SIGINT, note)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield seen
    finally:
        # A SIGINT that came meanwhile is handled (by note) before this call returns.
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[_CtrlC]:
    """Hold a further Ctrl-C (SIGINT) while an interrupted owner ends its work: it is
    noted, not raised in the middle of that (which would leave commands running). In
    the main thread only; the previous handler is back afterwards."""
    seen = _CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def note(signum: int, frame: Any) -> None:
        seen.pressed = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
