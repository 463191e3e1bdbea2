"""How records become rows and back, the same for every SQL backend.

Records are stored as their JSON (the API's JSON) next to the key columns that
queries use; an execution's owner, heartbeat and lease token live only in their
columns, since they change without the rest of the record.

A record that cannot become JSON (an output holding a custom object, a lone
surrogate, a NUL character that PostgreSQL's JSONB refuses) raises
:class:`~connectsw.core.errors.UnwritableRecord` before any transaction starts,
on every backend alike.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from connectsw.core.errors import UnwritableRecord, one_line
from connectsw.core.models import (
    CheckpointState,
    Event,
    Execution,
    GateResult,
    LLMUsage,
    Plan,
    TaskResult,
)

TaskRow = tuple[str, str, int, int, str, str, str, float | None, int, int, int, float, str]

# A JSON ``\u0000`` escape (not an escaped backslash followed by "u0000"):
# PostgreSQL's JSONB cannot hold it, so no backend stores it.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dump(record: BaseModel, what: str, exclude: set[str] | None = None) -> str:
    """``record`` as JSON; :class:`UnwritableRecord` naming ``what`` if it cannot be stored."""
    try:
        text = record.model_dump_json(exclude=exclude)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError) as exc:
        raise UnwritableRecord(f"cannot store {what}: {one_line(exc)}") from None
    if "\\u0000" in text and _NUL.search(text):
        raise UnwritableRecord(f"cannot store {what}: it contains a NUL character")
    return text


def execution_json(execution: Execution) -> str:
    """The execution's record, without its plan (a column written once,
    :func:`plan_json`) and the columns owned by claims and heartbeats."""
    return dump(
        execution,
        f"execution {execution.id}",
        exclude={"plan", "owner", "heartbeat_at", "lease_token"},
    )


def plan_json(execution: Execution) -> str:
    """The execution's plan, as its ``plan`` column holds it (written when it is created:
    a plan never changes once stored)."""
    return dump(execution.plan, f"the plan of execution {execution.id}")


class PlanCache:
    """Parsed plans by their stored JSON text (a few, the latest used kept).

    A plan never changes once stored, and parsing one is ~40 µs a task (0.4 s at
    10,000 tasks); an engine reads its execution several times per run. The key is
    the text itself, so a different plan is never served. The same :class:`Plan`
    object is shared by the executions read with it: plans are not changed in place
    (code that changes one, as the learning engine, builds a new one).
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, text: str, plan: Plan) -> None:
        """Note that ``text`` (as just stored) is ``plan``."""
        with self._lock:
            self._plans[text] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def get(self, text: str | bytes) -> Plan:
        """The plan stored as ``text``; pydantic's ValidationError if it is not one."""
        if isinstance(text, bytes):
            text = text.decode()
        with self._lock:
            plan = self._plans.get(text)
            if plan is not None:
                self._plans.move_to_end(text)
                return plan
        plan = Plan.model_validate_json(text)
        self.put(text, plan)
        return plan


def execution_from_row(
    data: str,
    plan: Plan,
    owner: str | None,
    heartbeat_at: datetime | None,
    lease_token: int,
) -> Execution:
    """An execution from its record, its plan and its lease columns."""
    record = json.loads(data)
    record["plan"] = plan
    execution = Execution.model_validate(record)
    execution.owner = owner
    execution.heartbeat_at = heartbeat_at
    execution.lease_token = int(lease_token)
    return execution


def task_result_rows(results: Sequence[TaskResult]) -> list[TaskRow]:
    """(execution_id, task_id, round, attempt, status, execution_id, task_id (the key of
    its plan task, whose agent the row gets), duration_seconds, llm_calls, tokens_in,
    tokens_out, cost, record) per result.

    ``duration_seconds``: seconds from ``started_at`` to ``finished_at``, None unless
    the attempt has both (the learning statistics' durations, core/stores/learning.py).
    """
    rows: list[TaskRow] = []
    for r in results:
        u = r.usage or LLMUsage()
        record = dump(r, f"the result of task {r.task_id} (execution {r.execution_id})")
        seconds = _seconds(r.started_at, r.finished_at)
        rows.append(
            (
                r.execution_id,
                r.task_id,
                r.round,
                r.attempt,
                r.status.value,
                r.execution_id,
                r.task_id,
                seconds,
                u.calls,
                u.tokens_in,
                u.tokens_out,
                u.cost,
                record,
            )
        )
    return rows


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``; a time without zone is UTC (as SQL reads it)."""
    if start is None or end is None:
        return None
    return (_aware(end) - _aware(start)).total_seconds()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def checkpoint_json(checkpoint: CheckpointState) -> str:
    """A checkpoint's record."""
    return dump(
        checkpoint,
        f"the checkpoint of stage {checkpoint.stage} (execution {checkpoint.execution_id})",
    )


def gate_json(execution_id: str, gate: GateResult) -> str:
    """A gate result's record."""
    return dump(gate, f"the gate result of stage {gate.stage} (execution {execution_id})")


def event_rows(events: Sequence[Event]) -> list[tuple[str, str, str]]:
    """(execution_id, kind, record) per event (its ``seq`` is the row's key)."""
    rows = []
    for e in events:
        what = f"an event of task {e.task_id}" if e.task_id else f"a {e.kind} event"
        rows.append(
            (e.execution_id, str(e.kind), dump(e, f"{what} (execution {e.execution_id})", {"seq"}))
        )
    return rows


def events_from_rows(rows: Sequence[tuple[int, str]]) -> list[Event]:
    """Events from (seq, record) rows."""
    out = []
    for seq, data in rows:
        event = Event.model_validate_json(data)
        event.seq = seq
        out.append(event)
    return out
