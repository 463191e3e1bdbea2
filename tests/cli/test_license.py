"""``connectsw license ...`` as an operator runs it: real processes, a real store on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def cli(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTSW_")}
    env["CONNECTSW_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "connectsw.cli.main", "license", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_issue_shows_the_key_once_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    issued = json.loads(
        cli(tmp_path, "issue", "--tier", "PRO", "--email", "a@b.io", "--json").stdout
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
        out = cli(tmp_path, *command)
        assert tag not in out.stdout + out.stderr
    shown = json.loads(cli(tmp_path, "show", license_id, "--json").stdout)
    assert shown["status"] == "active" and shown["tier"] == "PRO"


def test_suspend_reinstate_revoke_and_the_exit_codes(tmp_path: Path) -> None:
    license_id = json.loads(
        cli(tmp_path, "issue", "--tier", "FREE", "--email", "a@b.io", "--json").stdout
    )["id"]
    out = json.loads(cli(tmp_path, "suspend", license_id, "--reason", "shared", "--json").stdout)
    assert out["status"] == "suspended" and out["reason"] == "shared"
    assert json.loads(cli(tmp_path, "reinstate", license_id, "--json").stdout)["status"] == "active"
    cli(tmp_path, "revoke", license_id)
    again = cli(tmp_path, "reinstate", license_id, check=False)
    assert again.returncode == 5
    assert again.stderr.strip() == "Error: a revoked license cannot become active"
    missing = cli(tmp_path, "show", "CSFW-PRO-AAAAAAAAAAAAAAAA", check=False)
    assert missing.returncode == 4


@pytest.mark.parametrize(
    "args",
    [
        ["issue", "--tier", "GOLD", "--email", "a@b.io"],
        ["issue", "--tier", "PRO", "--email", "nobody"],
        ["issue", "--tier", "PRO", "--email", "a@b.io", "--users", "0"],
    ],
)
def test_bad_issue_requests_are_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = cli(tmp_path, *args, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert json.loads(cli(tmp_path, "list", "--json").stdout) == []


def test_a_certificate_verifies_offline_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    license_id = json.loads(
        cli(tmp_path, "issue", "--tier", "BUSINESS", "--email", "a@b.io", "--json").stdout
    )["id"]
    cert = tmp_path / "license.cert"
    cert.write_text(cli(tmp_path, "certificate", license_id).stdout)
    pub = tmp_path / "server.pub"
    pub.write_text(cli(tmp_path, "public-key").stdout)
    # Offline: another data dir, no store, no secrets; only the public key.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok = cli(elsewhere, "verify", str(cert), "--public-key", str(pub), "--json")
    assert json.loads(ok.stdout)["license_id"] == license_id
    assert not (elsewhere / "data").exists()
    version, payload, signature = cert.read_text().strip().split(".")
    tampered = tmp_path / "tampered.cert"
    tampered.write_text(f"{version}.{payload[:-2]}AA.{signature}")
    bad = cli(elsewhere, "verify", str(tampered), "--public-key", str(pub), check=False)
    assert bad.returncode == 5
    assert "signature does not match" in bad.stderr and len(bad.stderr.splitlines()) == 1
    garbage = cli(elsewhere, "verify", str(pub), "--public-key", str(pub), check=False)
    assert garbage.returncode == 5 and "not a csfw-cert-v1" in garbage.stderr
    # A suspended license gets no certificate.
    cli(tmp_path, "suspend", license_id, "--reason", "unpaid")
    assert cli(tmp_path, "certificate", license_id, check=False).returncode == 5


def test_production_mode_without_a_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text('mode = "production"\n')
    proc = cli(tmp_path, "issue", "--tier", "PRO", "--email", "a@b.io", check=False)
    assert proc.returncode == 2
    assert "CONNECTSW_LICENSE_SECRET" in proc.stderr
