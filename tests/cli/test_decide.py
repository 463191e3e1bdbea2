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


MOVED_GRAPH = """
name: moved
tasks:
  - {id: a, agent: shell, with: {command: "echo important > a.txt", outputs: [a.txt]}}
  - {id: b, agent: shell, needs: [a], with: {command: "cat a.txt > b.txt", outputs: [b.txt]}}
checkpoints:
  - {after: [a], question: "Go on?"}
"""


def _at_checkpoint(cli: Cli, tmp_path: Path) -> str:
    (tmp_path / "g.yaml").write_text(MOVED_GRAPH)
    res = cli("run", "g.yaml", "--json", "-w", tmp_path / "ws", ok=True)
    assert res.json()["status"] == "awaiting_checkpoint"
    return str(res.execution_id)


def test_a_workspace_moved_at_a_checkpoint_is_not_recreated(cli: Cli, tmp_path: Path) -> None:
    """Issue 5, kind 11/10: ``mv ws ws-moved`` at a checkpoint, then ``approve``: the
    engine says the workspace is gone (exit 2, one line) and re-creates nothing; once
    it is back, ``resume`` runs stage 2 in it."""
    eid = _at_checkpoint(cli, tmp_path)
    ws = tmp_path / "ws"
    ws.rename(tmp_path / "ws-moved")
    res = cli("approve", eid)
    assert res.returncode == ExitCode.INVALID_INPUT, str(res)
    line = res.error_line()
    assert "is gone" in line and str(ws) in line, line
    assert not ws.exists()
    assert not (tmp_path / "ws-moved" / "b.txt").exists()
    (tmp_path / "ws-moved").rename(ws)
    assert cli("resume", eid, "--json", ok=True).json()["status"] == "completed"
    assert (ws / "b.txt").read_text() == "important\n"


def test_a_workspace_replaced_by_another_repository_is_refused(cli: Cli, tmp_path: Path) -> None:
    """The same path, but a new repository without the execution's commits: exit 2."""
    import shutil

    eid = _at_checkpoint(cli, tmp_path)
    ws = tmp_path / "ws"
    shutil.rmtree(ws)
    ws.mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    res = cli("approve", eid)
    assert res.returncode == ExitCode.INVALID_INPUT, str(res)
    assert "no longer holds" in res.error_line()
    assert not (ws / "b.txt").exists()


def test_a_workspace_whose_git_file_leads_nowhere_is_an_input_error(
    cli: Cli, tmp_path: Path
) -> None:
    """A moved worktree: ``.git`` is a file naming a gitdir that is gone. Exit 2, one
    line, as for any unusable workspace (not 1, "an execution failed")."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".git").write_text(f"gitdir: {tmp_path / 'nowhere' / 'x'}\n")
    (tmp_path / "g.yaml").write_text(GRAPH)
    res = cli("run", "g.yaml", "--yes", "-w", ws)
    assert res.returncode == ExitCode.INVALID_INPUT, str(res)
    assert "its .git does not lead to a git repository" in res.error_line()
    assert cli("status", "--json", ok=True).json() == []  # refused before it is stored


def test_a_decision_without_running_says_what_was_recorded_and_how_to_go_on(
    cli: Cli, tmp_path: Path
) -> None:
    """Issue 5, kind 11: ``--no-run`` says the decision is recorded, nothing runs now,
    and the command that continues; not a bare "interrupted"."""
    eid = waiting(cli, tmp_path)
    res = cli("request-changes", eid, "--feedback", "one", "--no-run", ok=True)
    assert "interrupted" not in res.stdout, res.stdout
    assert "changes requested" in res.stdout and "nothing runs now" in res.stdout
    assert f"connectsw resume {eid}" in res.stdout
    assert cli("resume", eid, "--json", ok=True).json()["status"] == "awaiting_checkpoint"
    res = cli("approve", eid, "--no-run", ok=True)
    assert "interrupted" not in res.stdout, res.stdout
    assert "approved" in res.stdout and f"connectsw resume {eid}" in res.stdout
    assert cli("resume", eid, "--json", ok=True).json()["status"] == "completed"


def test_a_decision_whose_run_another_process_took_shows_the_state(
    cli: Cli, tmp_path: Path
) -> None:
    """Issue 5, kind 3/11: ``approve`` records its decision, then finds another live
    process holds the execution (a ``status`` that resumed it first): the decision
    stands, so it shows the state (exit 0), not "is being run by" with exit 5."""
    import socket
    import sys

    from connectsw.conf.settings import load_settings
    from connectsw.core.models import utcnow
    from connectsw.core.stores import open_store

    eid = waiting(cli, tmp_path)
    store = open_store(load_settings().store_url)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        token = store.get_execution(eid).lease_token
        owner = f"{socket.gethostname()}:{holder.pid}"
        assert store.claim(eid, owner, token, utcnow()) == token + 1
        res = cli("approve", eid)
        assert res.returncode == ExitCode.OK, str(res)
        assert f"being run by {owner}" in res.stdout and "showing its state" in res.stdout
        assert "Error" not in res.stderr, res.stderr
        assert cli.view(eid)["status"] == "executing"  # decided; the holder runs it
    finally:
        holder.kill()
        holder.wait()
