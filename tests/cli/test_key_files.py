"""Key files named by a setting are read by core/textfiles.py's one rule: a regular
file of bounded size, else one line with exit 2.

Found by the new-user trial (trial 5, item 4): ``CONNECTSW_GRANT_KEY_FILE=/dev/zero``
took 23 GB (exit 70 under ``ulimit -v``); ``CONNECTSW_SIGNING_KEY_FILE`` too. Here a
large sparse regular file and a FIFO stand in for ``/dev/zero`` (never read unbounded).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import Cli

GRAPH = "name: ok\ntasks:\n  - id: a\n    agent: noop\n"


def _big(path: Path) -> Path:
    with path.open("wb") as fh:
        fh.truncate(20_000_000)  # sparse
    return path


@pytest.mark.parametrize("kind", ["large", "fifo"])
@pytest.mark.parametrize(
    ("env", "args"),
    [
        ("CONNECTSW_GRANT_KEY_FILE", ("run", "ok.yaml", "--yes")),
        ("CONNECTSW_SIGNING_KEY_FILE", ("license", "public-key")),
    ],
    ids=["grant-key", "signing-key"],
)
def test_a_key_file_that_is_huge_or_not_a_file_is_one_line(
    cli: Cli, env: str, args: tuple[str, ...], kind: str
) -> None:
    (cli.cwd / "ok.yaml").write_text(GRAPH)
    key = cli.cwd / "key.pem"
    if kind == "large":
        _big(key)
    else:
        os.mkfifo(key)
    cli.env[env] = str(key)
    res = cli(*args, timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    line = res.error_line()
    assert str(key) in line
    assert ("larger than 65536 bytes" if kind == "large" else "it is a named pipe (FIFO)") in line
