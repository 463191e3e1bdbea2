"""How records become rows and back, the same for every SQL backend.

Records are stored as their JSON (the API's JSON) next to the key columns that
queries use; an execution's owner and heartbeat live only in their columns,
since they change without the rest of the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from connectsw.core.models import Event, Execution, TaskResult

TaskRow = tuple[str, str, int, int, str, str]


def execution_json(execution: Execution) -> str:
    """The execution's record, without the columns owned by claims and heartbeats."""
    return execution.model_dump_json(exclude={"owner", "heartbeat_at"})


def execution_from_row(data: str, owner: str | None, heartbeat_at: datetime | None) -> Execution:
    """An execution from its record and its ownership columns."""
    execution = Execution.model_validate_json(data)
    execution.owner = owner
    execution.heartbeat_at = heartbeat_at
    return execution


def task_result_rows(results: Sequence[TaskResult]) -> list[TaskRow]:
    """(execution_id, task_id, round, attempt, status, record) per result."""
    return [
        (r.execution_id, r.task_id, r.round, r.attempt, r.status.value, r.model_dump_json())
        for r in results
    ]


def event_json(event: Event) -> str:
    """An event's record (its ``seq`` is the row's key)."""
    return event.model_dump_json(exclude={"seq"})


def events_from_rows(rows: list[tuple[int, str]]) -> list[Event]:
    """Events from (seq, record) rows."""
    out = []
    for seq, data in rows:
        event = Event.model_validate_json(data)
        event.seq = seq
        out.append(event)
    return out
