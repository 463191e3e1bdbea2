"""``connectsw gates list | check``: the real console script on real workspaces."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.gates.workspaces import OK_SERVER

GRAPH = """\
name: svc
tasks:
  - id: make
    agent: shell
    with:
      command: cp good.py server.py
      outputs: [server.py]
checkpoints:
  - after: [make]
    name: service_ready
    question: Service ready?
"""

CONFIG = """\
[gates]
server_command = "python server.py {port}"
server_timeout = 5.0

[gates.rule_sets.service_ready]
rules = ["server-start", "build"]

[gates.rule_sets.later]
rules = ["no-such-rule"]
"""


def test_list_shows_rules_what_they_apply_to_and_rule_sets(cli, tmp_path: Path) -> None:
    data = cli("gates", "list", "--json", ok=True).json()
    rules = {r["name"]: r for r in data["rules"]}
    assert {"build", "server-start", "smoke-tests", "visual", "test-first", "coverage"} <= set(
        rules
    )
    assert rules["visual"]["applies_to"] == ["page"]
    assert rules["build"]["applies_to"] == ["python", "node"]
    assert rules["coverage"]["plugin"] == "connectsw.gates.rules"
    default = data["rule_sets"]["implementation_complete"]
    assert default["rules"] == ["build", "server-start", "smoke-tests", "visual"]
    assert default["not_run_passes"] == ["visual"]
    assert data["remediation_rounds"] == 2
    assert "page" in data["traits"]

    (tmp_path / "connectsw.toml").write_text(CONFIG)
    text = cli("gates", "list", ok=True).stdout
    assert "rule set service_ready: server-start, build" in text
    assert "not installed: no-such-rule" in text
    assert "server-start" in text and "service" in text


def test_check_a_workspace_passes_and_fails_with_exit_codes(cli, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "app.py").write_text("X = 1\n")
    ok = cli("gates", "check", "--workspace", ws, "--rule", "build", "--json", ok=True).json()
    assert ok["passed"] and ok["rules"][0]["rule"] == "build"
    assert ok["workspace"] == str(ws.resolve()) and ok["stage"] == 1

    (ws / "broken.py").write_text("def f(:\n")
    bad = cli("gates", "check", "--workspace", ws, "--rule", "build")
    assert bad.returncode == 1, str(bad)  # ExitCode.FAILED
    assert "build failed" in bad.stdout and "broken.py" in bad.stdout
    assert "Remediation:" in bad.stdout and "Gate failed" in bad.stdout


def test_check_runs_a_checkpoint_rule_set(cli, tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text(CONFIG)
    (tmp_path / "server.py").write_text(OK_SERVER)
    res = cli("gates", "check", "--checkpoint", "service_ready", "--json", ok=True).json()
    assert [r["rule"] for r in res["rules"]] == ["server-start", "build"]
    assert "HTTP 200" in res["rules"][0]["details"]


def test_check_an_executions_stage(cli, tmp_path: Path) -> None:
    (tmp_path / "connectsw.toml").write_text(CONFIG)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "good.py").write_text(OK_SERVER)
    (tmp_path / "svc.yaml").write_text(GRAPH)
    eid = cli("run", "svc.yaml", "--workspace", ws, "--json", ok=True).execution_id
    assert cli.view(eid)["status"] == "awaiting_checkpoint"

    checked = cli("gates", "check", eid, "--stage", "1", "--json", ok=True).json()
    assert checked["passed"] and checked["stage"] == 1
    assert [r["rule"] for r in checked["rules"]] == ["server-start", "build"]

    # Someone breaks the service: the check says so, and records nothing.
    (ws / "server.py").write_text("raise SystemExit('broken by hand')\n")
    broken = cli("gates", "check", "--stage", "1", "--workspace", ws)
    assert broken.returncode == 1, str(broken)
    assert "broken by hand" in broken.stdout
    assert cli.view(eid)["status"] == "awaiting_checkpoint"
    assert cli.view(eid)["gate"]["passed"] is True


def test_bad_input_is_one_line(cli, tmp_path: Path) -> None:
    unknown = cli("gates", "check", "--rule", "nope")
    assert unknown.returncode == 2 and "unknown gate rule 'nope'" in unknown.error_line()
    no_set = cli("gates", "check", "--checkpoint", "nothing_here")
    assert no_set.returncode == 2 and "no rule set for checkpoint type" in no_set.error_line()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    none = cli("gates", "check", "--stage", "1")
    assert none.returncode == 4 and "no execution has the workspace" in none.error_line()
    missing = cli("gates", "check", "exec_000000000000")
    assert missing.returncode == 4, str(missing)
    missing.error_line()


def test_a_workspace_that_cannot_be_used_is_exit_2(cli, tmp_path: Path) -> None:
    """Found by the new-user trial (8b, M2): ``gates check --workspace`` of a missing
    path or of a file gave exit 4 (not found); the README gives exit 2 for a workspace
    that cannot be used, as ``run -w`` does."""
    (tmp_path / "file").write_text("x")
    for path, reason in [
        ("/dev/null", "not a directory"),
        (tmp_path / "file", "not a directory"),
        ("/nonexistent", "not found"),
    ]:
        got = cli("gates", "check", "--workspace", path)
        assert got.returncode == 2, str(got)
        assert got.error_line() == f"Error: workspace {path}: {reason}"
