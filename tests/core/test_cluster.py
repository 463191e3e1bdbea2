"""Connecting to Dask: addresses checked first, a deadline, no Dask re-runs (issue 5)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster

from connectsw.conf.settings import DaskSettings
from connectsw.core.cluster import START_HINT, connect, parse_scheduler_address
from connectsw.core.errors import ConfigError


def refused(address: str, timeout: float = 2.0) -> str:
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        connect(DaskSettings(scheduler_address=address, connect_timeout=timeout))
    elapsed = time.monotonic() - started
    text = str(info.value)
    assert "\n" not in text
    assert info.value.exit_code == 2
    assert info.value.__cause__ is None
    assert elapsed < timeout + 5, elapsed
    return text


@pytest.mark.parametrize(
    "address",
    [
        "tcp://",
        "not a url",
        "tcp://host:notaport",
        "tcp://host:99999",
        "tcp://host",
        "http://127.0.0.1:8787",
        "https://scheduler.example:8786",
        "tcp://user:pw@host:8786",
        "tcp://host:8786/path",
        "ws://host:8786",
    ],
)
def test_malformed_addresses_are_refused_before_connecting(address: str) -> None:
    text = refused(address)
    assert "dask.scheduler_address" in text
    assert "tcp://HOST:PORT" in text


def test_well_formed_addresses_parse() -> None:
    assert parse_scheduler_address("tcp://10.0.0.5:8786") == ("tcp", "10.0.0.5", 8786)
    assert parse_scheduler_address("10.0.0.5:8786") == ("tcp", "10.0.0.5", 8786)
    assert parse_scheduler_address("tls://sched.example:8786") == ("tls", "sched.example", 8786)
    assert parse_scheduler_address("tcp://[::1]:8786") == ("tcp", "::1", 8786)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_a_clear_error() -> None:
    text = refused(f"tcp://127.0.0.1:{free_port()}")
    assert text.startswith("cannot reach the Dask scheduler at 127.0.0.1:")


@pytest.fixture
def http_server() -> Iterator[int]:
    """A plain HTTP server (python's http.server) on a loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_plain_http_server_fails_fast(http_server: int) -> None:
    text = refused(f"tcp://127.0.0.1:{http_server}", timeout=2)
    assert "sent no Dask greeting within 2 s" in text


@pytest.fixture
def http_400_port() -> Iterator[int]:
    """A port that answers every connection with ``HTTP/1.1 400 Bad Request`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    listener.close()


def test_port_answering_http_400_fails_fast_without_memory_error(http_400_port: int) -> None:
    text = refused(f"tcp://127.0.0.1:{http_400_port}", timeout=2)
    assert "answered as an HTTP server, not as a Dask scheduler" in text


def test_port_answering_garbage_is_refused() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"\xff" * 16)

    threading.Thread(target=serve, daemon=True).start()
    try:
        text = refused(f"tcp://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()
    assert "answered, but not as a Dask scheduler does" in text


def scheduler(allowed_failures: int | None, n_workers: int = 0) -> LocalCluster:
    kwargs: dict[str, object] = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    if allowed_failures is not None:
        kwargs["allowed_failures"] = allowed_failures
    return LocalCluster(
        n_workers=n_workers,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs=kwargs,
    )


def test_external_scheduler_that_re_runs_tasks_is_refused() -> None:
    with scheduler(None) as cluster:  # distributed's default: 3
        text = refused(cluster.scheduler_address)
    assert "re-runs a task when a worker dies (allowed-failures 3)" in text
    assert text.endswith(START_HINT)


def test_external_scheduler_with_allowed_failures_zero_is_used() -> None:
    with scheduler(0, n_workers=1) as cluster:  # a worker: none is refused (trial 6)
        client, local = connect(
            DaskSettings(scheduler_address=cluster.scheduler_address, connect_timeout=5)
        )
        try:
            assert local is None
            assert (
                client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 0
            )
        finally:
            client.close()


def test_local_cluster_never_re_runs_a_task_itself() -> None:
    client, cluster = connect(DaskSettings(n_workers=1, threads_per_worker=1, processes=False))
    assert cluster is not None
    try:
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        assert allowed == 0
    finally:
        client.close()
        cluster.close()


def dying_task(path: Path) -> str:
    """Python source that records a run, then ends its worker as an out-of-memory kill would.

    Submitted as ``exec(source)``: a builtin, so the worker needs no test module.
    """
    return f"import os\nopen({str(path)!r}, 'a').write('run\\n')\nos._exit(1)\n"


@pytest.mark.slow
def test_task_that_kills_its_worker_runs_once(tmp_path: Path) -> None:
    """Fault 2a at the Dask level: the worker dies; Dask does not start the task again."""
    runs = tmp_path / "runs.txt"
    client, cluster = connect(DaskSettings(n_workers=1, threads_per_worker=1, processes=True))
    try:
        future = client.submit(exec, dying_task(runs), pure=False)
        with pytest.raises(Exception) as info:
            future.result(timeout=60)
        assert type(info.value).__name__ == "KilledWorker"
        time.sleep(1)  # a re-run, if any, would start on the restarted worker now
        assert len(runs.read_text(encoding="utf-8").splitlines()) == 1
    finally:
        client.close()
        cluster.close()


PARENT = """\
import os, sys, time
from connectsw.conf.settings import DaskSettings
from connectsw.core.cluster import connect

if __name__ == "__main__":
    client, cluster = connect(DaskSettings(n_workers=2, threads_per_worker=1, processes=True))
    client.wait_for_workers(2)
    pids = client.run(os.getpid)
    print(" ".join(str(p) for p in pids.values()), flush=True)
    time.sleep(120)
"""


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_local_cluster_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(running(p) for p in workers)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(running(p) for p in workers)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_scheduler_without_workers_is_refused_after_the_worker_wait(
    bare_scheduler: str,
) -> None:
    """Trial 6 (issue 5, kinds 1 and 10): ``run`` waited for ever, past every timeout."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        connect(DaskSettings(scheduler_address=bare_scheduler, connect_timeout=5, worker_wait=1))
    assert str(info.value) == f"no Dask workers at {bare_scheduler} after 1 s"
    assert info.value.__cause__ is None
    assert time.monotonic() - started < 8
