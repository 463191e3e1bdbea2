"""Executions submitted through the server belong to a license; listing filters by it."""

from __future__ import annotations

from connectsw.core.models import Execution, Plan, Request
from connectsw.core.stores import Store


def _execution(license_id: str | None) -> Execution:
    return Execution(
        request=Request(command="run", args=["x"]),
        plan=Plan(name="p", workflow="graph", tasks=[], stages=[]),
        workspace="/tmp/ws",
        license_id=license_id,
    )


def test_executions_are_listed_per_license(store: Store) -> None:
    mine = [_execution("CSFW-PRO-AAAA"), _execution("CSFW-PRO-AAAA")]
    other = _execution("CSFW-PRO-BBBB")
    local = _execution(None)
    for e in (*mine, other, local):
        store.create_execution(e)
    assert {e.id for e in store.list_executions(10, license_id="CSFW-PRO-AAAA")} == {
        e.id for e in mine
    }
    assert [e.id for e in store.list_executions(10, license_id="CSFW-PRO-BBBB")] == [other.id]
    assert len(store.list_executions(10)) == 4  # local mode sees every execution
    got = store.get_execution(mine[0].id)
    assert got is not None and got.license_id == "CSFW-PRO-AAAA"
