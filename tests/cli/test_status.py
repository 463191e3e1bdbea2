"""``connectsw status``, ``watch``, ``plugins``, ``schema`` and every command's ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from connectsw.cli.main import cli as cli_group

from .conftest import EXEC_ID

GRAPH = """\
name: tiny
tasks:
  - {id: first, agent: noop}
  - {id: second, agent: noop, needs: [first]}
checkpoints:
  - {after: [first], name: halfway, question: "Half done. Go on?"}
"""

BUILTIN_AGENTS = {
    "product-manager",
    "architect",
    "backend-engineer",
    "frontend-engineer",
    "qa-engineer",
    "shell",
    "noop",
}
BUILTIN_WORKFLOWS = {"new-product", "new-feature", "fix-bug", "task-graph"}
BUILTIN_GATES = {"tests-pass"}


def test_status_without_executions(cli):
    res = cli("status", ok=True)
    assert "No executions yet." in res.stdout
    assert cli("status", "--json", ok=True).json() == []


def test_status_lists_executions_and_reports_unknown_ids(cli, tmp_path):
    (tmp_path / "tiny.yaml").write_text(GRAPH)
    done = cli("run", "tiny.yaml", "--yes", "--json", "-w", "done", ok=True).json()
    paused = cli("run", "tiny.yaml", "-w", "paused", ok=True)
    done_id, paused_id = done["executionId"], paused.execution_id
    assert done["status"] == "completed"

    listing = cli("status", "--json", ok=True).json()
    by_id = {e["executionId"]: e for e in listing}
    assert set(by_id) == {done_id, paused_id}
    assert by_id[done_id]["status"] == "completed"
    assert by_id[paused_id]["status"] == "awaiting_checkpoint"
    assert {e["plan"] for e in listing} == {"tiny"}
    assert listing[0]["executionId"] == paused_id, "newest first"

    table = cli("status", ok=True).stdout
    for eid, word in ((done_id, "completed"), (paused_id, "awaiting_checkpoint")):
        row = next(line for line in table.splitlines() if eid in line)
        assert word in row and "tiny" in row, row

    shown = cli("status", paused_id, ok=True).stdout
    assert "halfway" in shown and f"connectsw approve {paused_id}" in shown

    missing = cli("status", "nope")
    line = missing.error_line()
    assert missing.returncode == 4, str(missing)
    assert "nope" in line and "no execution" in line


def test_watch_json_on_a_finished_execution(cli, tmp_path):
    (tmp_path / "tiny.yaml").write_text(GRAPH)
    eid = cli("run", "tiny.yaml", "--yes", "--json", ok=True).json()["executionId"]

    # Returns on its own (the execution is finished), printing one JSON event per line.
    res = cli("watch", eid, "--json", "--from-start", ok=True, timeout=30)
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events, str(res)
    assert {e["executionId"] for e in events} == {eid}
    assert events[0]["kind"] == "execution.created"
    assert events[-1]["kind"] == "execution.completed"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    succeeded = [e["taskId"] for e in events if e["kind"] == "task.succeeded"]
    assert succeeded == ["first", "second"]

    # Without --from-start it still prints the latest events and exits.
    tail = cli("watch", eid, "--json", ok=True, timeout=30)
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert lines and lines[-1]["kind"] == "execution.completed"

    assert cli("watch", "nope", "--json").error_line().startswith("Error: no execution")


FAILS = "name: fails\ntasks:\n  - {id: a, agent: shell, with: {command: 'exit 3'}}\n"
PAUSES = (
    "name: pauses\ntasks:\n  - {id: a, agent: shell, with: {command: 'true'}}\n"
    "  - {id: b, agent: shell, needs: [a], with: {command: 'true'}}\n"
    "checkpoints:\n  - {after: [a], question: 'Go on?'}\n"
)


def test_watch_exits_as_status_does_for_a_finished_execution(cli, tmp_path):
    """Trial 5 item 12: `watch` of a failed or cancelled execution exited 0 while
    `status ID` exited 1 or 8: one rule (the state table's exit codes) for both."""
    (tmp_path / "fails.yaml").write_text(FAILS)
    failed = cli("run", "fails.yaml", "--yes", "--json").json()["executionId"]
    (tmp_path / "pauses.yaml").write_text(PAUSES)
    paused = cli("run", "pauses.yaml", "--json", ok=True).json()["executionId"]
    cancelled = cli("run", "pauses.yaml", "--json", ok=True).json()["executionId"]
    cli("cancel", cancelled, ok=True)
    for eid, code in ((failed, 1), (cancelled, 8), (paused, 0)):
        assert cli("status", eid, "--no-resume").returncode == code
        for extra in ((), ("--json",), ("--from-start",)):
            res = cli("watch", eid, *extra, timeout=30)
            assert res.returncode == code, str(res)
            assert not res.stderr.strip(), str(res)  # an outcome, not an error


def test_plugins_lists_the_builtins(cli):
    infos = cli("plugins", "--json", ok=True).json()
    builtin = [i for i in infos if i["builtin"]]
    provided = {kind: {n for i in builtin for n in i[kind]} for kind in ("agents", "workflows")}
    assert provided["agents"] >= BUILTIN_AGENTS
    assert provided["workflows"] >= BUILTIN_WORKFLOWS
    assert {n for i in builtin for n in i["gates"]} >= BUILTIN_GATES
    assert all(i["hooks"] for i in builtin)

    table = cli("plugins", ok=True).stdout
    assert "built-in" in table and "tests-pass" in table


def test_schema_is_json_schema(cli):
    schema = cli("schema", ok=True).json()
    assert "$schema" in schema
    assert {"name", "tasks"} <= set(schema["required"])
    assert "checkpoints" in schema["properties"]


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


HELP_ALL = """
import contextlib, io, json, sys
from connectsw.cli.main import main

shown = {}
for path in json.loads(sys.argv[1]):
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code
    shown[" ".join(path)] = [code, out.getvalue()]
print(json.dumps(shown))
"""


def test_help_for_every_command(cli):
    paths = _command_paths(cli_group)
    expected = {
        "new",
        "fix",
        "run",
        "status",
        "watch",
        "approve",
        "request-changes",
        "cancel",
        "resume",
        "plugins",
        "schema",
    }
    assert expected <= {p[0] for p in paths}
    assert {("new", "product"), ("new", "feature")} <= set(paths)

    top = cli("--help", ok=True)
    assert top.stdout.startswith("Usage: connectsw [OPTIONS] COMMAND"), top.stdout
    for name in expected:
        assert f"  {name} " in top.stdout, f"{name} missing from the top-level help"

    # Every command's help through the real entry point, in one interpreter (start-up is
    # most of a command's cost).
    proc = subprocess.run(
        [sys.executable, "-c", HELP_ALL, json.dumps(paths)],
        cwd=cli.cwd,
        env=cli.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    shown = json.loads(proc.stdout)
    for path in paths:
        where = " ".join(path)
        code, out = shown[where]
        assert code in (0, None), f"{where}: exit {code}"
        assert out.startswith(f"Usage: connectsw {where} "), f"{where}: {out}"
        assert len(out.splitlines()) > 3, f"{where}: {out}"


def test_an_owner_killed_while_starting_leaves_a_resumable_execution(default_cli, tmp_path):
    """kill -9 while the cluster starts: the execution shows interrupted; status continues it."""
    import os
    import signal
    import time

    from .conftest import EXEC_ID

    (tmp_path / "g.yaml").write_text(
        "name: k\ntasks:\n  - id: a\n    agent: shell\n"
        "    with: {command: 'echo ran >> ../ran.txt'}\n"
    )
    env = {
        **default_cli.env,
        "CONNECTSW_ENGINE__LEASE_TIMEOUT": "2",
        "CONNECTSW_ENGINE__HEARTBEAT_INTERVAL": "0.5",
    }
    default_cli.env = env
    proc = default_cli.spawn("run", "g.yaml", "--yes", "-w", "ws", stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = EXEC_ID.search(line)
        if match:
            break
    os.kill(proc.pid, signal.SIGKILL)  # the cluster is still starting
    proc.wait()
    eid = match.group(0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = default_cli("status", eid, "--json", "--no-resume").json()
        if view["status"] == "interrupted":
            break
        time.sleep(0.2)
    assert view["status"] == "interrupted"
    done = default_cli("status", eid, "--json", ok=True).json()
    assert done["status"] == "completed"
    assert (tmp_path / "ran.txt").read_text().splitlines() == ["ran"]


def test_schema_accepts_json(cli):
    assert cli("schema", "--json", ok=True).json()["$schema"].startswith("https://json-schema")


def test_status_that_loses_a_takeover_race_shows_the_state(cli, tmp_path):
    """Issue 5, kind 3/11: the owner is killed mid-task; three ``status ID`` (one
    ``--json``) at once. One continues the execution; the others find another live
    process took it over first and show the state (exit 0), as for a live owner:
    never "is being run by" with exit 5."""
    import os
    import signal
    import time

    (tmp_path / "g.yaml").write_text(
        "name: race\ntasks:\n"
        "  - {id: t1, agent: shell, with: {command: 'echo 1 >> ../ran.txt'}}\n"
        "  - {id: t2, agent: shell, needs: [t1],"
        " with: {command: 'echo 2 >> ../ran.txt; sleep 3'}}\n"
        "  - {id: t3, agent: shell, needs: [t2], with: {command: 'echo 3 >> ../ran.txt'}}\n"
    )
    cli.env = {
        **cli.env,
        "CONNECTSW_ENGINE__LEASE_TIMEOUT": "2",
        "CONNECTSW_ENGINE__HEARTBEAT_INTERVAL": "0.5",
    }
    proc = cli.spawn("run", "g.yaml", "--yes", "-w", "ws", start_new_session=True)
    ran = tmp_path / "ran.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ran.exists() and "2" in ran.read_text().split():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the owner dies while t2 sleeps
    out, _ = proc.communicate()
    eid = EXEC_ID.search(out).group(0)
    racers = [
        cli.spawn("status", eid),
        cli.spawn("status", eid),
        cli.spawn("status", eid, "--json"),
    ]
    results = [(*p.communicate(timeout=120), p) for p in racers]
    for stdout, stderr, p in results:
        assert p.returncode == 0, f"{p.args}: exit {p.returncode}\n{stdout}\n{stderr}"
        assert "being run by" not in stderr and "Error" not in stderr, stderr
        assert eid in stdout or '"executionId"' in stdout, stdout
    view = json.loads(results[2][0])
    assert view["executionId"] == eid
    assert view["status"] in ("executing", "completed")
    assert cli.view(eid)["status"] == "completed"
    assert ran.read_text().split().count("3") == 1
