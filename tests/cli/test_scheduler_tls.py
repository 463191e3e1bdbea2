"""A ``tls://`` scheduler address where nothing answers TLS is one line with a deadline.

Found by the new-user trial: a ``tls://`` address whose scheduler speaks plain TCP
ended in "internal error" (distributed's ``TypeError`` about ``ssl_context``).
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

GRAPH = "name: x\ntasks:\n  - id: a\n    agent: noop\n"


def serve(greeting: bytes | None) -> Iterator[int]:
    """A TCP listener that sends ``greeting`` (None: nothing) on every connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if greeting is not None:
                conn.sendall(greeting)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in conns:
        conn.close()
    server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    yield from serve(None)


@pytest.fixture
def plain_dask_port() -> Iterator[int]:
    """A port that greets as a plain-TCP Dask scheduler does (length, frame count)."""
    yield from serve(struct.pack("<QQ", 64, 1) + b"\x00" * 48)


@pytest.fixture
def tls_config(tmp_path: Path) -> dict[str, str]:
    """Dask's TLS client configuration with a throwaway self-signed certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(cert),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(cert),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(key),
    }


def run(cli: Cli, port: int, env: dict[str, str] | None = None) -> tuple[str, float]:
    (cli.cwd / "g.yaml").write_text(GRAPH)
    cli.env.update(env or {})
    cli.env["CONNECTSW_DASK__SCHEDULER_ADDRESS"] = f"tls://127.0.0.1:{port}"
    cli.env["CONNECTSW_DASK__CONNECT_TIMEOUT"] = "1"
    start = time.monotonic()
    res = cli("run", "g.yaml", "--yes", "-w", "ws", timeout=60)
    elapsed = time.monotonic() - start
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "internal error" not in res.stderr
    return res.stderr.strip().splitlines()[-1], elapsed


def test_tls_without_a_tls_configuration_is_one_line(cli: Cli, plain_dask_port: int) -> None:
    line, _ = run(cli, plain_dask_port)
    assert line.startswith("Error: dask.scheduler_address is a tls:// address but Dask has no")


def test_a_plain_tcp_scheduler_at_a_tls_address_is_one_line(
    cli: Cli, plain_dask_port: int, tls_config: dict[str, str]
) -> None:
    line, _ = run(cli, plain_dask_port, tls_config)
    assert "did not complete a TLS handshake" in line and "use tcp://" in line


def test_nothing_answering_tls_stops_at_the_connect_timeout(
    cli: Cli, silent_port: int, tls_config: dict[str, str]
) -> None:
    line, elapsed = run(cli, silent_port, tls_config)
    assert "did not complete a TLS handshake within 1 s" in line
    assert elapsed < 20


TLS_SETTINGS = {
    "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": "distributed.comm.tls.ca-file",
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": "distributed.comm.tls.client.cert",
    "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": "distributed.comm.tls.client.key",
}


@pytest.mark.parametrize("variable", list(TLS_SETTINGS))
def test_a_missing_tls_file_is_named_with_its_setting(
    cli: Cli, plain_dask_port: int, tls_config: dict[str, str], variable: str
) -> None:
    """Found by the new-user trial: a missing CA file read "IsADirectoryError: Is a
    directory" (distributed takes a value that is no file for PEM text)."""
    missing = cli.cwd / "missing.pem"
    line, _ = run(cli, plain_dask_port, {**tls_config, variable: str(missing)})
    assert line == f"Error: {TLS_SETTINGS[variable]} {missing}: not found"


def test_a_tls_file_that_is_not_pem_names_the_settings(
    cli: Cli, plain_dask_port: int, tls_config: dict[str, str]
) -> None:
    bad = cli.cwd / "bad.pem"
    bad.write_text("not a certificate\n")
    line, _ = run(
        cli, plain_dask_port, {**tls_config, "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(bad)}
    )
    assert line.startswith(
        "Error: the Dask TLS configuration (distributed.comm.tls.ca-file, .client.cert,"
        " .client.key) cannot be used: SSLError: "
    )
