"""``connectsw license ...`` as an operator runs it: real processes, a real store on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

pytestmark = pytest.mark.slow


def test_issue_shows_the_key_once_and_only_its_digest_is_stored(cli: Cli, tmp_path: Path) -> None:
    issued = json.loads(
        cli("license", "issue", "--tier", "PRO", "--email", "a@b.io", "--json", ok=True).stdout
    )
    key, license_id = issued["key"], issued["id"]
    assert key.startswith(f"{license_id}-")
    tag = key.rsplit("-", 1)[1]
    stored = (tmp_path / "data" / "connectsw.db").read_bytes()
    assert license_id.encode() in stored and tag.encode() not in stored
    for command in (
        ["list", "--json"],
        ["show", license_id, "--json"],
        ["list"],
        ["show", license_id],
    ):
        out = cli("license", *command, ok=True)
        assert tag not in out.stdout + out.stderr
    shown = json.loads(cli("license", "show", license_id, "--json", ok=True).stdout)
    assert shown["status"] == "active" and shown["tier"] == "PRO"
    # The whole key pasted where the id is asked for (trial 8, M1): read as its id; a key
    # of no license is refused naming only its public part.
    by_key = json.loads(cli("license", "show", key, "--json", ok=True).stdout)
    assert by_key["id"] == license_id
    other = "CSFW-PRO-AAAAAAAAAAAAAAAA-BBBBBBBBBBBBBBBB"
    missing = cli("license", "show", other)
    assert missing.returncode == 4
    assert "BBBBBBBBBBBBBBBB" not in missing.stdout + missing.stderr
    assert "CSFW-PRO-AAAAAAAAAAAAAAAA" in missing.stderr


def test_suspend_reinstate_revoke_and_the_exit_codes(cli: Cli, tmp_path: Path) -> None:
    license_id = json.loads(
        cli("license", "issue", "--tier", "FREE", "--email", "a@b.io", "--json", ok=True).stdout
    )["id"]
    out = json.loads(
        cli("license", "suspend", license_id, "--reason", "shared", "--json", ok=True).stdout
    )
    assert out["status"] == "suspended" and out["reason"] == "shared"
    assert (
        json.loads(cli("license", "reinstate", license_id, "--json", ok=True).stdout)["status"]
        == "active"
    )
    cli("license", "revoke", license_id, ok=True)
    again = cli("license", "reinstate", license_id)
    assert again.returncode == 5
    assert again.stderr.strip() == "Error: a revoked license cannot become active"
    missing = cli("license", "show", "CSFW-PRO-AAAAAAAAAAAAAAAA")
    assert missing.returncode == 4


@pytest.mark.parametrize(
    "args",
    [
        ["issue", "--tier", "GOLD", "--email", "a@b.io"],
        ["issue", "--tier", "PRO", "--email", "nobody"],
        ["issue", "--tier", "PRO", "--email", "a@b.io", "--users", "0"],
    ],
)
def test_bad_issue_requests_are_one_line_exit_2(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    proc = cli("license", *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert json.loads(cli("license", "list", "--json", ok=True).stdout) == []


def test_a_certificate_verifies_offline_and_a_tampered_one_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    license_id = json.loads(
        cli("license", "issue", "--tier", "BUSINESS", "--email", "a@b.io", "--json", ok=True).stdout
    )["id"]
    cert = tmp_path / "license.cert"
    cert.write_text(cli("license", "certificate", license_id, ok=True).stdout)
    pub = tmp_path / "server.pub"
    pub.write_text(cli("license", "public-key", ok=True).stdout)
    # Offline: another data dir, no store, no secrets; only the public key.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    away = Cli(elsewhere, elsewhere / "data")
    ok = away("license", "verify", str(cert), "--public-key", str(pub), "--json", ok=True)
    assert json.loads(ok.stdout)["license_id"] == license_id
    assert not (elsewhere / "data").exists()
    version, payload, signature = cert.read_text().strip().split(".")
    tampered = tmp_path / "tampered.cert"
    tampered.write_text(f"{version}.{payload[:-2]}AA.{signature}")
    bad = away("license", "verify", str(tampered), "--public-key", str(pub))
    assert bad.returncode == 5
    assert "signature does not match" in bad.stderr and len(bad.stderr.splitlines()) == 1
    garbage = away("license", "verify", str(pub), "--public-key", str(pub))
    assert garbage.returncode == 5 and "not a csfw-cert-v1" in garbage.stderr
    # A suspended license gets no certificate.
    cli("license", "suspend", license_id, "--reason", "unpaid", ok=True)
    assert cli("license", "certificate", license_id).returncode == 5


def test_production_mode_without_a_secret_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text('mode = "production"\n')
    proc = cli("license", "issue", "--tier", "PRO", "--email", "a@b.io")
    assert proc.returncode == 2
    assert "CONNECTSW_LICENSE_SECRET" in proc.stderr


def test_a_certificate_or_key_that_is_a_fifo_is_one_line_not_a_hang(
    cli: Cli, tmp_path: Path
) -> None:
    # Trial 5 item 3's kind: opening a FIFO waited for a writer for ever.
    fifo = tmp_path / "license.cert"
    os.mkfifo(fifo)
    res = cli("license", "verify", str(fifo), "--public-key", str(fifo), timeout=30)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "is a named pipe (FIFO), not a regular file" in res.stderr
    assert len(res.stderr.splitlines()) == 1
