"""``connectsw insights`` and the learned plan, as a user runs them (real CLI, real store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import Cli

# "nap" sleeps; "flaky" fails its first attempt in each workspace, then succeeds (retry:
# engine.default_retries, as it leaves its retries to the engine and learning).
GRAPH = {
    "name": "learn",
    "tasks": [
        {"id": "nap", "agent": "shell", "retries": 0, "with": {"command": "sleep 0.6"}},
        {
            "id": "flaky",
            "agent": "shell",
            "with": {"command": "test -f .tried || { touch .tried; exit 3; }"},
        },
    ],
    "checkpoints": [{"after": ["nap", "flaky"], "question": "Good?"}],
}


@pytest.mark.both_stores
def test_insights_and_the_learned_plan(
    cli: Cli, tmp_path: Path, store_backend: str, request: pytest.FixtureRequest
) -> None:
    if store_backend == "postgresql":
        cli.env["CONNECTSW_STORE__URL"] = request.getfixturevalue("postgres_url")
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(GRAPH))
    cli.env["CONNECTSW_LEARNING__MIN_RUNS"] = "2"
    cli.env["CONNECTSW_ENGINE__DEFAULT_RETRIES"] = "1"
    before = cli("run", "g.yaml", "--plan-only", "--json", "-w", "ws0", ok=True).json()["plan"]
    assert before["estimatedSeconds"] == 60.0 and before["estimatedDuration"] == "about 60 s"
    assert [t["learned"]["basis"] for t in before["tasks"]] == ["default", "default"]
    assert [t["retries"] for t in before["tasks"]] == [0, None]

    first = cli("run", "g.yaml", "-w", "ws1").execution_id  # stops at the checkpoint
    cli("request-changes", first, "-f", "Add a Security section", ok=True)  # round 2 waits
    view = cli.view(first)  # status --json shows the plan's estimate (no history then)
    assert (view["estimatedSeconds"], view["estimatedDuration"]) == (60.0, "about 60 s")
    cli("run", "g.yaml", "--yes", "-w", "ws2", ok=True)  # approved: completed

    after = cli("run", "g.yaml", "--plan-only", "--json", "-w", "ws9", ok=True).json()["plan"]
    nap, flaky = after["tasks"]
    assert nap["learned"]["basis"] == "history" and nap["learned"]["runs"] >= 2
    assert 0.5 <= nap["learned"]["estimatedSeconds"] < 5
    assert after["estimatedSeconds"] < 10 and after["estimatedDuration"].endswith(" s")
    # 2 of flaky's 5 attempts failed (rounds 1 and 2 of the first, the second): 0.4 >= 0.3.
    assert flaky["learned"]["failureRate"] == 0.4 and flaky["learned"]["extraRetries"] == 1
    assert flaky["retries"] == 2 and nap["retries"] == 0  # the author's 0 is kept
    text = cli("run", "g.yaml", "--plan-only", "-w", "ws9", ok=True).stdout
    assert "estimated" in text and "+1 retry (failure-prone)" in text

    report = cli("insights", "--json", ok=True).json()
    assert set(report) >= {"workflows", "tasks", "checkpoints", "changeRequests", "weakSpots"}
    tasks = {t["taskId"]: t for t in report["tasks"]}
    assert (tasks["flaky"]["runs"], tasks["flaky"]["retries"]) == (3, 2)
    assert tasks["flaky"]["successRate"] == 1.0
    assert tasks["nap"]["p50Seconds"] >= 0.5
    [cp] = report["checkpoints"]
    assert (cp["decisions"], cp["approved"], cp["changesRequested"]) == (2, 1, 1)
    assert report["changeRequests"][0]["feedback"] == "Add a Security section"
    assert [w["subject"] for w in report["weakSpots"]] == ["flaky"]

    shown = cli("insights", "--workflow", "task-graph", ok=True).stdout
    for word in ("Tasks", "flaky", "nap", "Checkpoints", "Add a Security section", "Weak spots"):
        assert word in shown, shown
    bad = cli("insights", "--workflow", "nope")
    assert "unknown workflow 'nope'" in bad.error_line()

    # SQL analysts find the same history in the learned_patterns view.
    rows = cli(
        "analytics",
        "sql",
        "SELECT pattern_type, subject, frequency FROM learned_patterns"
        " WHERE pattern_type = 'change_request'",
        "--format",
        "json",
        ok=True,
    ).json()
    assert rows == [{"pattern_type": "change_request", "subject": "checkpoint_1", "frequency": 1}]
    views = cli("analytics", "views", "--json", ok=True).json()
    assert "learned_patterns" in [v["name"] for v in views]
    sqlite_file = Path(cli.env["CONNECTSW_DATA_DIR"]) / "connectsw.db"
    assert sqlite_file.exists() is (store_backend == "sqlite")
