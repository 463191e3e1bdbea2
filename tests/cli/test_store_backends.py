"""The CLI on the production store: PostgreSQL named by ``CONNECTSW_STORE__URL``."""

from __future__ import annotations

import socket

from connectsw.core.stores import open_store

GRAPH = """\
name: two-files
tasks:
  - id: first
    agent: shell
    with: {command: "echo one > one.txt", outputs: [one.txt]}
  - id: second
    agent: shell
    needs: [first]
    with: {command: "cat one.txt > two.txt", outputs: [two.txt]}
checkpoints:
  - {after: [first], question: "One written. Go on?"}
"""


def test_a_checkpoint_pauses_in_postgresql_and_a_later_process_approves(
    cli, tmp_path, postgres_url
):
    cli.env["CONNECTSW_STORE__URL"] = postgres_url
    (tmp_path / "two.yaml").write_text(GRAPH)
    paused = cli("run", "two.yaml", "-w", "ws", ok=True)
    eid = paused.execution_id
    assert cli.view(eid)["status"] == "awaiting_checkpoint"
    assert not (tmp_path / "data" / "connectsw.db").exists()  # nothing went to SQLite

    done = cli("approve", eid, "--json", ok=True).json()
    assert done["status"] == "completed"
    assert (tmp_path / "ws" / "two.txt").read_text() == "one\n"
    store = open_store(postgres_url)
    try:
        assert {r.task_id: r.status.value for r in store.task_results(eid)} == {
            "first": "succeeded",
            "second": "succeeded",
        }
        assert [c.decision.value for c in store.checkpoints(eid) if c.decision] == ["approve"]
    finally:
        store.close()


def test_an_unreachable_postgresql_is_one_line_without_the_password(cli):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli.env["CONNECTSW_STORE__URL"] = f"postgresql://ann:hunter2@127.0.0.1:{port}/cs"
    res = cli("status")
    line = res.error_line()
    assert res.returncode == 6, str(res)
    assert "hunter2" not in res.stdout + res.stderr
    assert f"postgresql://ann:***@127.0.0.1:{port}/cs" in line
