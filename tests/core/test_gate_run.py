"""A gate run is recorded before its first rule runs: an owner that dies during it leaves
a record, and the next owner says ``gate.stopped`` (core/gate_run.py, core/leftovers.py)."""

from __future__ import annotations

from pathlib import Path

from connectsw.core.gate_run import GateRun
from connectsw.core.lease import Lease
from connectsw.core.leftovers import GATE_ENDED, end_gate_leftover
from connectsw.core.models import Execution, Plan, Request, Stage, TaskSpec
from connectsw.core.stores.sqlite import SQLiteStore


def _owned(tmp_path: Path) -> tuple[SQLiteStore, Execution, Lease]:
    store = SQLiteStore(tmp_path / "connectsw.db")
    plan = Plan(
        name="p",
        workflow="task-graph",
        tasks=[TaskSpec(id="a", agent="noop")],
        stages=[Stage(index=0, name="one", task_ids=["a"], gates=["tests-pass"])],
    )
    execution = Execution(request=Request(command="run"), plan=plan, workspace=str(tmp_path))
    store.create_execution(execution)
    lease = Lease.claim(store, execution, "owner-1", lease_timeout=30, heartbeat_interval=5)
    return store, execution, lease


def test_an_owner_that_dies_before_its_gate_starts_a_command_leaves_a_record(
    tmp_path: Path,
) -> None:
    """CI under load: the gate's command started (and was seen) before its process group
    was recorded; the owner was killed then, and the next run recorded no ``gate.stopped``."""
    store, execution, lease = _owned(tmp_path)
    run = GateRun(store, execution.id, lease)
    run.__enter__()  # the owner dies here: no command yet, no __exit__
    assert end_gate_leftover(store, execution.id, lease.token) is True
    stopped = [e for e in store.events(execution.id) if e.kind == "gate.stopped"]
    assert [e.message for e in stopped] == [GATE_ENDED]
    assert store.gate_process(execution.id) is None
    assert end_gate_leftover(store, execution.id, lease.token) is False  # recorded once


def test_a_gate_run_that_ends_leaves_no_record(tmp_path: Path) -> None:
    store, execution, lease = _owned(tmp_path)
    with GateRun(store, execution.id, lease):
        assert store.gate_process(execution.id) == {}
    assert store.gate_process(execution.id) is None
    assert end_gate_leftover(store, execution.id, lease.token) is False
