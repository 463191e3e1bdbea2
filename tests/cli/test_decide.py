"""Deciding and resuming from the CLI: races and states that allow nothing (issue 5, 3 and 11)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from connectsw.core.errors import ExitCode

from .conftest import Cli, command

GRAPH = """
name: decide
tasks:
  - {id: a, agent: noop}
  - {id: b, agent: noop, needs: [a]}
checkpoints:
  - {after: [a], question: "Go on?"}
"""


def waiting(cli: Cli, tmp_path: Path) -> str:
    (tmp_path / "g.yaml").write_text(GRAPH)
    res = cli("run", "g.yaml", "--json", "-w", tmp_path / "ws", ok=True)
    assert res.json()["status"] == "awaiting_checkpoint"
    return str(res.execution_id)


def test_two_decisions_started_at_once_one_wins_the_other_exits_5(cli: Cli, tmp_path: Path) -> None:
    for _ in range(3):
        eid = waiting(cli, tmp_path)
        procs = [
            subprocess.Popen(
                [*argv],
                cwd=cli.cwd,
                env=cli.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in (
                [*command(), "approve", eid, "--no-run"],
                [*command(), "request-changes", eid, "--no-run", "-f", "redo it"],
            )
        ]
        outcomes = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in outcomes)
        assert codes == [ExitCode.OK, ExitCode.NOT_ALLOWED], outcomes
        loser = next(err for code, err in outcomes if code == ExitCode.NOT_ALLOWED)
        assert "already decided" in loser and len(loser.strip().splitlines()) == 1
        decided = [e for e in cli.events(eid) if e["kind"] == "checkpoint.decided"]
        assert len(decided) == 1


def test_resume_of_a_finished_or_waiting_execution_exits_5(cli: Cli, tmp_path: Path) -> None:
    eid = waiting(cli, tmp_path)
    res = cli("resume", eid)
    assert res.returncode == ExitCode.NOT_ALLOWED
    assert "waiting at a checkpoint" in res.error_line()
    cli("approve", eid, ok=True)
    res = cli("resume", eid)
    assert res.returncode == ExitCode.NOT_ALLOWED
    assert "already completed; nothing to resume" in res.error_line()


def test_plan_only_leaves_no_execution(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(GRAPH)
    cli("run", "g.yaml", "--plan-only", ok=True)
    assert cli("status", "--json", ok=True).json() == []
