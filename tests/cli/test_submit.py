"""``connectsw new``, ``run``, the checkpoint decisions and ``resume``, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRODUCT = "AI-powered code reviewer"
PRODUCT_TASKS = ["prd", "architecture", "backend", "frontend", "qa"]


def git_subjects(workspace: Path) -> list[str]:
    """Commit subjects of a workspace, oldest first."""
    proc = subprocess.run(
        ["git", "-C", str(workspace), "log", "--reverse", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


def commits_of(workspace: Path, task_id: str) -> int:
    """How many commits a task made (subjects read ``TASK: title``)."""
    return sum(1 for s in git_subjects(workspace) if s.split(":", 1)[0] == task_id)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


# -- the built-in new-product workflow ---------------------------------------------


@pytest.mark.slow
def test_new_product_end_to_end_on_a_real_local_cluster(default_cli, tmp_path):
    ws = tmp_path / "reviewer"
    res = default_cli("new", "product", PRODUCT, "--yes", "--workspace", ws, ok=True)
    eid = res.execution_id

    view = default_cli.view(eid)
    assert view["status"] == "completed", view
    assert view["tasks"] == dict.fromkeys(PRODUCT_TASKS, "succeeded")
    assert Path(view["workspace"]) == ws.resolve()

    for rel in (
        "docs/PRD.md",
        "docs/architecture.md",
        "service/app.py",
        "web/index.html",
        "docs/QA-report.md",
    ):
        assert (ws / rel).is_file(), rel
    assert list((ws / "docs" / "adr").glob("*.md")), "no ADR written"
    assert "Code Reviewer" in (ws / "docs" / "PRD.md").read_text()

    # The generated service's own test suite passes.
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr

    # One commit per task, each naming its task.
    subjects = git_subjects(ws)
    assert len(subjects) == len(PRODUCT_TASKS), subjects
    assert sorted(s.split(":", 1)[0] for s in subjects) == sorted(PRODUCT_TASKS), subjects
    assert subjects[0].startswith("prd:") and subjects[-1].startswith("qa:"), subjects


def test_checkpoints_are_decided_from_later_processes(cli, tmp_path):
    ws = tmp_path / "reviewer"

    # Non-interactive without --yes: stops at the first checkpoint and says how to go on.
    first = cli("new", "product", PRODUCT, "--workspace", ws, ok=True)
    eid = first.execution_id
    assert "prd_complete" in first.stdout
    assert f"connectsw approve {eid}" in first.stdout
    assert not (ws / "docs" / "architecture.md").exists()

    view = cli.view(eid)
    assert view["status"] == "awaiting_checkpoint"
    assert view["checkpoint"]["type"] == "prd_complete"
    assert "docs/PRD.md" in [a["path"] for a in view["checkpoint"]["artifacts"]]
    assert view["tasks"]["prd"] == "succeeded"
    assert view["tasks"]["architecture"] == "pending"

    # A new process approves: the architecture stage runs and pauses at its checkpoint.
    approved = cli("approve", eid, ok=True)
    assert "architecture_complete" in approved.stdout
    assert f"connectsw approve {eid}" in approved.stdout
    architecture = ws / "docs" / "architecture.md"
    assert architecture.is_file()
    assert "GitLab" not in architecture.read_text()
    assert commits_of(ws, "architecture") == 1

    # Changes requested: the stage runs again (round 1) with the feedback.
    changed = cli("request-changes", eid, "--feedback", "mention GitLab", "--json", ok=True)
    view = changed.json()
    assert view["status"] == "awaiting_checkpoint"
    assert view["round"] == 1
    assert view["checkpoint"]["type"] == "architecture_complete"
    assert view["tasks"]["backend"] == "pending"
    assert "GitLab" in architecture.read_text()
    assert commits_of(ws, "architecture") == 2
    assert commits_of(ws, "prd") == 1

    cancelled = cli("cancel", eid, "--json", ok=True).json()
    assert cancelled["status"] == "cancelled"
    assert cli.view(eid)["status"] == "cancelled"

    late = cli("approve", eid)
    line = late.error_line()
    assert late.returncode == 8, str(late)  # the README: 8 for a cancelled execution
    assert eid in line and "cancelled" in line
    assert not (ws / "service").exists(), "nothing may run after cancel"


# -- task-graph files ---------------------------------------------------------------

GRAPH = """
name: release-notes
tasks:
  - id: collect
    agent: shell
    with:
      command: "printf 'one\\ntwo\\n' > items.txt"
      outputs: [items.txt]
  - id: count
    agent: shell
    needs: [collect]
    with:
      command: "wc -l < items.txt | tr -d ' ' > count.txt"
      outputs: [count.txt]
  - id: notes
    agent: shell
    needs: [collect, count]
    with:
      command: 'echo "$(cat count.txt) items by $CONNECTSW_TASK_ID" > notes.md'
      outputs: [notes.md]
checkpoints:
  - after: [count]
    name: counted
    question: Counted the items. Go on?
"""


def test_run_graph_file(cli, tmp_path):
    graph = write(tmp_path / "graph.yaml", GRAPH)

    ws = tmp_path / "ws"
    res = cli("run", graph, "--yes", "--workspace", ws, ok=True)
    assert "checkpoint.reached" in res.stdout  # reached, then approved by --yes
    assert cli.view(res.execution_id)["status"] == "completed"
    assert (ws / "items.txt").read_text() == "one\ntwo\n"
    assert (ws / "count.txt").read_text().strip() == "2"
    assert (ws / "notes.md").read_text().strip() == "2 items by notes"
    assert git_subjects(ws) == ["collect: shell task", "count: shell task", "notes: shell task"]

    # --json: stdout is exactly one JSON document, the final view.
    ws_json = tmp_path / "ws-json"
    view = cli("run", "graph.yaml", "--yes", "--json", "-w", ws_json, ok=True).json()
    assert view["status"] == "completed"
    assert view["tasks"] == {"collect": "succeeded", "count": "succeeded", "notes": "succeeded"}
    assert (ws_json / "notes.md").is_file()

    # --plan-only: the plan, and nothing runs or is left pending.
    ws_plan = tmp_path / "ws-plan"
    before = cli("status", "--json", ok=True).json()
    planned = cli("run", graph, "--plan-only", "--json", "-w", ws_plan, ok=True).json()
    assert planned["executionId"] is None
    plan = planned["plan"]
    assert plan["name"] == "release-notes"
    assert [t["id"] for t in plan["tasks"]] == ["collect", "count", "notes"]
    assert [c["type"] for c in plan["checkpoints"]] == ["counted"]
    assert [c["question"] for c in plan["checkpoints"]] == ["Counted the items. Go on?"]
    assert planned["nextCheckpoint"] == "counted"
    assert not ws_plan.exists()
    assert cli("status", "--json", ok=True).json() == before


GRAPH_ERRORS = {
    "cycle.yaml": (
        """
        name: loop
        tasks:
          - {id: build, agent: noop, needs: [deploy]}
          - {id: deploy, agent: noop, needs: [build]}
        """,
        ["cycle", "build", "deploy"],
    ),
    "agent.yaml": (
        """
        name: magic
        tasks:
          - {id: spell, agent: wizard}
        """,
        ["unknown agent", "wizard", "spell"],
    ),
    "needs.yaml": (
        """
        name: orphan
        tasks:
          - {id: child, agent: noop, needs: [ghost]}
        """,
        ["unknown task", "ghost", "child"],
    ),
    "key.yaml": (
        """
        name: paint
        tasks:
          - {id: wall, agent: noop, colour: red}
        """,
        ["colour", "unknown key"],
    ),
    "bad.yaml": (
        """
        name: broken
        tasks: [
          - {id: a
        """,
        ["invalid YAML", "line"],
    ),
    "missing.yaml": (None, ["missing.yaml", "not found"]),
}


def test_graph_file_errors_are_one_line_and_run_nothing(cli, tmp_path):
    for name, (text, expected) in GRAPH_ERRORS.items():
        if text is not None:
            write(tmp_path / name, text)
        res = cli("run", name, "--yes", "--workspace", tmp_path / "ws")
        line = res.error_line()
        assert res.returncode == 2, f"{name}:\n{res}"
        assert name in line, f"{name}: the error should name the file: {line}"
        for word in expected:
            assert word in line, f"{name}: {word!r} missing from {line!r}"
        assert res.stdout == "", f"{name}:\n{res}"
    assert not (tmp_path / "ws").exists()
    assert cli("status", "--json", ok=True).json() == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CONNECTSW_DASK__SCHEDULER_ADDRESS", "not an address", "dask.scheduler_address"),
        ("CONNECTSW_DASK__SCHEDULER_ADDRESS", "tcp://127.0.0.1:99999", "invalid port"),
        ("CONNECTSW_GRANT_KEY_FILE", "{tmp}/no-such-key.pem", "no-such-key.pem: not found"),
        ("CONNECTSW_GRANT_KEY_FILE", "{tmp}/graph.yaml", "not an Ed25519 private key"),
    ],
)
def test_a_config_error_is_said_before_an_execution_is_stored(
    cli, tmp_path, variable, value, expected
):
    """Trial 5 item 12: a malformed scheduler address or an unusable grant key file left
    a new `failed` execution, its task `pending` and a "Resume:" hint, at each try."""
    write(
        tmp_path / "graph.yaml",
        "name: g\ntasks:\n  - {id: a, agent: shell, with: {command: 'touch ran'}}\n",
    )
    cli.env[variable] = value.format(tmp=tmp_path)
    for _ in range(2):
        res = cli("run", "graph.yaml", "--yes", "--workspace", tmp_path / "ws")
        assert res.returncode == 2, str(res)
        line = res.error_line()
        assert expected in line and "Resume" not in res.stdout + res.stderr, str(res)
    assert not (tmp_path / "ws" / "ran").exists()
    del cli.env[variable]
    assert cli("status", "--json", ok=True).json() == []  # nothing stored


@pytest.mark.parametrize(
    "where",
    ["/dev/null", "{tmp}/file/ws", "{tmp}/" + "d" * 300],  # a plain file: click refuses it
    ids=["dev-null", "under-a-file", "name-too-long"],
)
def test_an_unusable_workspace_is_refused_before_an_execution_is_stored(cli, tmp_path, where):
    """Trial 6 (issue 5, kind 11): a workspace that is a file left a `failed` execution
    with a "Resume:" hint at each try; it is input, refused like a bad setting."""
    write(
        tmp_path / "graph.yaml",
        "name: g\ntasks:\n  - {id: a, agent: shell, with: {command: 'touch ran'}}\n",
    )
    write(tmp_path / "file", "")
    workspace = where.format(tmp=tmp_path)
    for _ in range(2):
        res = cli("run", "graph.yaml", "--yes", "--workspace", workspace)
        assert res.returncode == 2, str(res)
        line = res.error_line()
        assert line.startswith(f"Error: workspace {workspace}: "), line
        assert res.stdout == "" and "Resume" not in res.stderr, str(res)  # no plan shown
    assert cli("status", "--json", ok=True).json() == []  # nothing stored


FLAKY = """
name: flaky
tasks:
  - id: fetch
    agent: shell
    with: {command: "echo data > fetched.txt", outputs: [fetched.txt]}
  - id: build
    agent: shell
    needs: [fetch]
    retries: 1
    with: {command: "cat input.txt fetched.txt > built.txt", outputs: [built.txt]}
  - id: ship
    agent: shell
    needs: [build]
    with: {command: "cp built.txt shipped.txt", outputs: [shipped.txt]}
"""


def test_failed_task_is_retried_then_resumed(cli, tmp_path):
    write(tmp_path / "flaky.yaml", FLAKY)
    ws = tmp_path / "ws"
    res = cli("run", "flaky.yaml", "--yes", "-w", ws)
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stdout + res.stderr
    eid = res.execution_id
    assert f"connectsw resume {eid}" in res.stdout

    view = cli.view(eid)
    assert view["status"] == "failed"
    assert view["tasks"] == {"fetch": "succeeded", "build": "failed", "ship": "skipped"}
    assert "build" in view["error"] and "input.txt" in view["error"]
    assert not (ws / "shipped.txt").exists()

    # Fix the precondition; resume runs only the unfinished tasks.
    (ws / "input.txt").write_text("input\n")
    resumed = cli("resume", eid, "--json", ok=True).json()
    assert resumed["status"] == "completed"
    assert set(resumed["tasks"].values()) == {"succeeded"}
    assert (ws / "shipped.txt").read_text() == "input\ndata\n"

    events = cli.events(eid)
    started: dict[str, list[int]] = {}
    for e in events:
        if e["kind"] == "task.started":
            started.setdefault(e["taskId"], []).append(e["data"]["attempt"])
    assert started["fetch"] == [1], "the succeeded task must not run again"
    assert started["build"] == [1, 2, 3]  # 1 + 1 retry, then the resumed attempt
    kinds = [(e["kind"], e["taskId"], e["data"].get("attempt")) for e in events]
    assert ("task.retrying", "build", 1) in kinds
    assert ("task.failed", "build", 2) in kinds
    assert ("task.succeeded", "build", 3) in kinds
    assert [e["kind"] for e in events].count("execution.resumed") == 1
    assert git_subjects(ws) == ["fetch: shell task", "build: shell task", "ship: shell task"]


GATED = """
name: gated
tasks:
  - id: build
    agent: shell
    with: {command: "echo built > build.txt", outputs: [build.txt]}
gates: [tests-pass]
"""

FAILING_TEST = """
import unittest


class SmokeTest(unittest.TestCase):
    def test_answer(self):
        self.assertEqual(6 * 7, 41)
"""


def test_gate_failure_then_resume(cli, tmp_path):
    write(tmp_path / "gated.yaml", GATED)
    ws = tmp_path / "ws"
    write(ws / "tests" / "__init__.py", "")
    test_file = write(ws / "tests" / "test_smoke.py", FAILING_TEST)

    res = cli("run", "gated.yaml", "--yes", "-w", ws)
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stderr
    eid = res.execution_id
    assert "tests-pass" in res.stdout
    assert "test_answer" in res.stdout  # the failing test is shown
    assert f"connectsw resume {eid}" in res.stdout

    view = cli.view(eid)
    assert view["status"] == "gate_failed"
    assert view["tasks"] == {"build": "succeeded"}
    assert [(r["rule"], r["passed"]) for r in view["gate"]["rules"]] == [("tests-pass", False)]
    assert "tests-pass" in view["error"]

    test_file.write_text(FAILING_TEST.replace("41", "42"))
    resumed = cli("resume", eid, "--json", ok=True).json()
    assert resumed["status"] == "completed"
    assert resumed["gate"]["passed"] is True
    assert git_subjects(ws) == ["build: shell task"], "the task must not run again"
