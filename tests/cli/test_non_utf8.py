"""Arguments, paths and file names that are not valid UTF-8 (trial 5, item 9).

An id such as ``exec_\\xe9`` gave exit 70 (UnicodeEncodeError); feedback, a
workspace, a graph file name or the current directory's name with such bytes gave
a misleading exit 6 "cannot store execution"; one file ``caf\\xe9.txt`` at the top of
the directory made every ``run`` there exit 6. Run through the real script with
real bytes in argv (subprocess passes them with surrogateescape).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectsw.core.errors import ExitCode

from .conftest import CHECKPOINT_GRAPH, Cli

GRAPH = "name: x\ntasks:\n  - id: a\n    agent: noop\n"
BAD = os.fsdecode(b"caf\xe9")


@pytest.mark.parametrize(
    "args",
    [
        ("status", f"exec_{BAD}"),
        ("watch", f"exec_{BAD}"),
        ("resume", f"exec_{BAD}"),
        ("cancel", f"exec_{BAD}"),
        ("approve", f"exec_{BAD}"),
        ("gates", "check", f"exec_{BAD}"),
        ("license", "show", f"lic_{BAD}"),
        ("memory", "forget", f"exec_{BAD}"),
        ("run", "ok.yaml", "--yes", "--workspace", f"ws_{BAD}"),
        ("run", f"{BAD}.yaml", "--yes"),
    ],
    ids=lambda a: "-".join(x for x in a if x.isascii() and not x.startswith("-"))[:30],
)
def test_an_argument_that_is_not_utf8_is_one_line_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    (cli.cwd / "ok.yaml").write_text(GRAPH)
    res = cli(*args, timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "caf\\xe9" in res.error_line() and "not valid UTF-8" in res.error_line()


def test_feedback_that_is_not_utf8_leaves_the_checkpoint_waiting(cli: Cli) -> None:
    (cli.cwd / "two.yaml").write_text(CHECKPOINT_GRAPH)
    ex = cli("run", "two.yaml", "-w", "ws", ok=True).execution_id
    res = cli("request-changes", ex, "--feedback", BAD)
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "not valid UTF-8" in res.error_line()
    assert cli.view(ex)["status"] == "awaiting_checkpoint"


def test_a_current_directory_that_is_not_utf8_is_refused_before_anything_is_stored(
    cli: Cli, tmp_path: Path
) -> None:
    cli.cwd = tmp_path / BAD
    cli.cwd.mkdir()
    (cli.cwd / "ok.yaml").write_text(GRAPH)
    res = cli("run", "ok.yaml", "--yes")
    assert res.returncode == ExitCode.INVALID_INPUT, res
    assert "not valid UTF-8" in res.error_line() and "caf\\xe9" in res.error_line()
    cli.cwd = tmp_path
    assert "exec_" not in cli("status").stdout  # nothing was stored


def test_a_file_name_that_is_not_utf8_in_the_directory_does_not_stop_runs(cli: Cli) -> None:
    (cli.cwd / "ok.yaml").write_text(GRAPH)
    (cli.cwd / f"{BAD}.txt").write_text("x")
    (cli.cwd / f"dir_{BAD}").mkdir()
    res = cli("run", "ok.yaml", "--yes", "--workspace", "ws")
    assert res.returncode == 0, res
