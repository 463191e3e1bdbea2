"""`connectsw serve --tls-cert --tls-key`: TLS 1.3 is served, a TLS 1.2 handshake is refused."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .serving import run_cli, start_server

pytestmark = pytest.mark.slow


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def handshake(port: int, cafile: Path, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def test_tls_13_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = start_server(
        tmp_path / "data",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        ready="Serving on https://",
        fast_dask=False,
    )
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert handshake(port, cert, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            handshake(port, cert, ssl.TLSVersion.TLSv1_2)
    finally:
        server.stop(10, strict=True)


@pytest.mark.parametrize("which", ["missing", "half"])
def test_unusable_tls_settings_are_one_line(tmp_path: Path, which: str) -> None:
    cert, key = self_signed(tmp_path)
    args = (
        ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)]
        if which == "missing"
        else ["--tls-cert", str(cert)]
    )
    proc = run_cli(
        ["serve", "--port", "0", *args], tmp_path / "data", tmp_path, 30, fast_dask=False
    )
    err = proc.stderr
    assert proc.returncode == 2
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
