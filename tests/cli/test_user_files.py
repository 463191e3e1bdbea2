"""Files the user gives the CLI (config files, graph files) are read by one rule.

Found by the new-user trial: a ``connectsw.toml`` in UTF-16 or with invalid UTF-8
ended in "internal error" (exit 70); a graph path that is a broken symbolic link
was reported under its target's name. Run through the real ``connectsw`` script.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

GRAPH = "name: x\ntasks:\n  - id: a\n    agent: noop\n"
CONFIG = "[engine]\ndefault_retries = 1\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (CONFIG.encode("utf-16-le"), "UTF-16 or UTF-32 without a byte-order mark"),
        (b"[engine]\n# caf\xe9\ndefault_retries = 1\n", "not valid UTF-8 (line 2, offset 14)"),
        (b"[store]\nurl = 'postgresql://u:p\xe9ss@h/db'\n", "not valid UTF-8 (line 2"),
    ],
    ids=["utf16-without-bom", "latin1", "latin1-password"],
)
@pytest.mark.parametrize("where", ["./connectsw.toml", "CONNECTSW_CONFIG"])
def test_a_config_file_that_is_not_utf8_is_one_line_exit_2(
    cli: Cli, content: bytes, expected: str, where: str
) -> None:
    if where == "CONNECTSW_CONFIG":
        (cli.cwd / "elsewhere.toml").write_bytes(content)
        cli.env["CONNECTSW_CONFIG"] = str(cli.cwd / "elsewhere.toml")
    else:
        (cli.cwd / "connectsw.toml").write_bytes(content)
    res = cli("status")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert "config file " in line and expected in line
    assert "0xe9" not in line  # the byte may belong to a password: only its position


def test_a_config_file_with_a_byte_order_mark_is_read(cli: Cli) -> None:
    (cli.cwd / "connectsw.toml").write_bytes('[engine]\ndefault_retries = "x"\n'.encode("utf-16"))
    res = cli("status")  # read: the invalid value is reported, not the encoding
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "engine.default_retries" in res.error_line()


@pytest.mark.parametrize("where", ["./connectsw.toml", "CONNECTSW_CONFIG"])
def test_a_config_file_that_is_a_broken_link_says_so(cli: Cli, where: str) -> None:
    link = cli.cwd / ("connectsw.toml" if where.startswith("./") else "mine.toml")
    link.symlink_to(cli.cwd / "moved.toml")
    if where == "CONNECTSW_CONFIG":
        cli.env["CONNECTSW_CONFIG"] = str(link)
    res = cli("status")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert f"config file {link if where != './connectsw.toml' else 'connectsw.toml'}" in line
    assert "broken symbolic link" in line and "moved.toml" in line


def test_a_graph_file_that_is_a_broken_link_is_named_as_given(cli: Cli) -> None:
    (cli.cwd / "graph.yaml").symlink_to(cli.cwd / "old" / "graph.yaml")
    res = cli("run", "graph.yaml", "--plan-only")
    missing = cli("run", "absent.yaml", "--plan-only")
    assert res.returncode == missing.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert line.startswith(f"Error: {cli.cwd / 'graph.yaml'}: not found")
    assert f"(a broken symbolic link to {cli.cwd / 'old' / 'graph.yaml'})" in line


def test_a_graph_file_that_is_a_directory_is_one_line(cli: Cli) -> None:
    (cli.cwd / "graph.yaml").mkdir()
    res = cli("run", "graph.yaml", "--plan-only")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "is a directory" in res.error_line()


@pytest.mark.parametrize("where", ["./connectsw.toml", "CONNECTSW_CONFIG", "graph"])
def test_a_fifo_given_as_config_or_graph_is_one_line_not_a_hang(cli: Cli, where: str) -> None:
    # Trial 5 item 3: opening the FIFO waited for a writer for ever, with no message.
    fifo = cli.cwd / ("connectsw.toml" if where.startswith("./") else "pipe")
    os.mkfifo(fifo)
    if where == "CONNECTSW_CONFIG":
        cli.env["CONNECTSW_CONFIG"] = str(fifo)
    args = ("run", "pipe", "--plan-only") if where == "graph" else ("status",)
    res = cli(*args, timeout=20)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "is a named pipe (FIFO), not a regular file" in res.error_line()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (GRAPH.encode("utf-16"), None),
        (GRAPH.encode("utf-16-le"), "without a byte-order mark"),
        (b"name: caf\xe9\ntasks: []\n", "not valid UTF-8 (byte 0xe9 at line 1, offset 9)"),
    ],
    ids=["utf16-bom", "utf16-without-bom", "latin1"],
)
def test_graph_files_follow_the_same_encoding_rule(
    cli: Cli, tmp_path: Path, content: bytes, expected: str | None
) -> None:
    (tmp_path / "g.yaml").write_bytes(content)
    res = cli("run", "g.yaml", "--plan-only")
    if expected is None:
        assert res.returncode == 0, res
    else:
        assert res.returncode == ExitCode.INVALID_INPUT, res
        assert expected in res.error_line()


def test_license_files_follow_the_same_encoding_rule(cli: Cli, tmp_path: Path) -> None:
    """A certificate and a public key saved as UTF-16 (with a byte-order mark) verify;
    before, they were "not a certificate (not ASCII text)"."""
    issued = cli("license", "issue", "--tier", "PRO", "--email", "a@b.io", "--json", ok=True)
    license_id = issued.json()["id"]
    cert = tmp_path / "license.cert"
    cert.write_bytes(cli("license", "certificate", license_id, ok=True).stdout.encode("utf-16"))
    pub = tmp_path / "server.pub"
    pub.write_bytes(cli("license", "public-key", ok=True).stdout.encode("utf-16"))
    ok = cli("license", "verify", str(cert), "--public-key", str(pub), "--json", ok=True)
    assert ok.json()["license_id"] == license_id
    cert.write_bytes(b"csfw-cert-v1.\xe9")
    res = cli("license", "verify", str(cert), "--public-key", str(pub))
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert res.error_line() == (
        f"Error: certificate file {cert}: not valid UTF-8 (byte 0xe9 at line 1, offset 13)"
    )
