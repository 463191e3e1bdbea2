"""Stages are numbered from 1 in text and in ``--json`` alike (found by the new-user trial).

``connectsw status --json`` showed the stage 0-based while the text said ``stage 1``.
"""

from __future__ import annotations

import re

from .conftest import CHECKPOINT_GRAPH, Cli

GRAPH = CHECKPOINT_GRAPH


def test_status_text_and_json_show_the_same_stage_number(cli: Cli) -> None:
    (cli.cwd / "g.yaml").write_text(GRAPH)
    plan = cli("run", "g.yaml", "--plan-only", "--json", ok=True).json()["plan"]
    assert [s["index"] for s in plan["stages"]] == [1, 2]
    assert {t["id"]: t["stage"] for t in plan["tasks"]} == {"a": 1, "b": 2}

    eid = cli("run", "g.yaml", "-w", "ws", ok=True).execution_id  # stops at the checkpoint
    text = cli("status", eid, "--no-resume", ok=True).stdout
    assert re.search(r"\(stage 1, round \d+\)", text), text
    assert cli.view(eid)["stage"] == 1

    listed = cli("status", "--json", ok=True).json()
    assert (listed[0]["stage"], listed[0]["stages"]) == (1, 2)
    table = cli("status", ok=True).stdout
    assert re.search(rf"{eid}\s+\S+\s+two\s+1/2\b", table), table

    events = cli.events(eid)
    stages = {e["stage"] for e in events if e["stage"] is not None}
    assert stages == {1}, events

    cli("approve", eid, ok=True)
    assert cli.view(eid)["stage"] == 2
    assert "(stage 2," in cli("status", eid, "--no-resume", ok=True).stdout
