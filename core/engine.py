"""The execution engine: persists plans, runs stages on Dask, stops at checkpoints.

State lives in the store, never only in this process: a stage interrupted by a
crash is continued by the next ``run`` (any process), which runs only the tasks
that had not succeeded. One process at a time owns a running execution (a lease
with a heartbeat); a dead owner's lease is taken over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

from distributed import Client, Future, LocalCluster
from distributed.client import FutureCancelledError

from connectsw.conf.settings import Settings
from connectsw.core import workspace as git
from connectsw.core.cluster import connect
from connectsw.core.errors import InvalidState, NotFound, StoreError, one_line
from connectsw.core.events import dispatch
from connectsw.core.graph import stage_graph, task_key
from connectsw.core.liveness import owner_alive, shown_status, this_owner
from connectsw.core.models import (
    CheckpointState,
    CheckpointView,
    Decision,
    Event,
    ExecuteResponse,
    Execution,
    ExecutionStatus,
    ExecutionView,
    GateResult,
    Request,
    TaskResult,
    TaskStatus,
    utcnow,
)
from connectsw.core.planner import Planner
from connectsw.core.runner import TaskCall, public_result
from connectsw.core.stores import Store, get_store
from connectsw.core.tasklog import flush as flush_task_log
from connectsw.gates.base import GateContext
from connectsw.gates.engine import evaluate_stage
from connectsw.plugins.registry import Registries, get_registries

log = logging.getLogger("connectsw.engine")

RUNNABLE = (
    ExecutionStatus.PENDING,
    ExecutionStatus.EXECUTING,
    ExecutionStatus.GATE_FAILED,
    ExecutionStatus.FAILED,
)


class Engine:
    """Runs executions against one store and one Dask cluster (started lazily)."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        client: Client | None = None,
        registries: Registries | None = None,
    ) -> None:
        self.settings = settings
        self.store_url = settings.store_url
        self.store = store or get_store(self.store_url)
        self.registries = registries or get_registries()
        self._client = client
        self._owns_client = client is None
        self._lease: _Lease | None = None
        self._cluster: LocalCluster | None = None
        self.owner = this_owner()

    # -- cluster ---------------------------------------------------------------
    @property
    def client(self) -> Client:
        """The Dask client, connecting (or starting a LocalCluster) on first use."""
        if self._client is None:
            self._client, self._cluster = connect(self.settings.dask)
        return self._client

    def close(self) -> None:
        """Close the client and LocalCluster this engine opened (not a client it was given)."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------
    def get(self, execution_id: str) -> Execution:
        """The execution, or :class:`NotFound`."""
        execution = self.store.get_execution(execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id!r}")
        return execution

    def status(self, execution: Execution) -> ExecutionStatus:
        """The execution's status as shown to users (INTERRUPTED if its owner died)."""
        return shown_status(execution, self.settings.engine.lease_timeout)

    def view(self, execution_id: str) -> ExecutionView:
        """The API's ``GET /v1/execution/{id}`` body."""
        execution = self.get(execution_id)
        checkpoint = None
        if execution.status is ExecutionStatus.AWAITING_CHECKPOINT:
            cp = self.current_checkpoint(execution)
            if cp is not None:
                checkpoint = CheckpointView(
                    type=cp.type, artifacts=cp.artifacts, question=cp.question, options=cp.options
                )
        gate = self.store.gate_result(execution.id, execution.stage, execution.round)
        return ExecutionView(
            execution_id=execution.id,
            status=self.status(execution),
            stage=execution.stage,
            round=execution.round,
            next_checkpoint=execution.next_checkpoint,
            checkpoint=checkpoint,
            gate=gate,
            tasks=self.task_states(execution),
            workspace=execution.workspace,
            error=execution.error,
        )

    def task_states(self, execution: Execution) -> dict[str, TaskStatus]:
        """Latest state of every task of the plan (pending if never started)."""
        latest = {r.task_id: r.status for r in self.store.task_results(execution.id)}
        return {t.id: latest.get(t.id, TaskStatus.PENDING) for t in execution.plan.tasks}

    def current_checkpoint(self, execution: Execution) -> CheckpointState | None:
        """The checkpoint of the current stage and round, if reached."""
        for cp in self.store.checkpoints(execution.id):
            if cp.stage == execution.stage and cp.round == execution.round:
                return cp
        return None

    # -- submitting ------------------------------------------------------------
    def submit(self, request: Request, workspace: Path, **options: Any) -> Execution:
        """Plan ``request`` and persist it as a pending execution (nothing runs yet)."""
        _, plan = Planner(self.registries).plan(request, **options)
        execution = Execution(request=request, plan=plan, workspace=str(workspace.resolve()))
        self.store.create_execution(execution)
        self._emit(execution, "execution.created", f"plan {plan.name}: {len(plan.tasks)} tasks")
        return execution

    @staticmethod
    def execute_response(execution: Execution) -> ExecuteResponse:
        """The API's ``POST /v1/execute`` body."""
        return ExecuteResponse(
            execution_id=execution.id,
            plan=execution.plan,
            status=execution.status,
            next_checkpoint=execution.next_checkpoint,
        )

    # -- running ---------------------------------------------------------------
    def run(self, execution_id: str) -> Execution:
        """Run from where the execution stands until a checkpoint, a failure or the end."""
        execution = self.get(execution_id)
        if execution.status not in RUNNABLE:
            return execution
        # A previous owner (dead, or the claim would fail) or a failure means this resumes.
        resumed = execution.owner is not None or execution.status in (
            ExecutionStatus.FAILED,
            ExecutionStatus.GATE_FAILED,
        )
        self._claim(execution)
        try:
            # Held for the whole run: gates between stages can take minutes too.
            with _Lease(self, execution) as self._lease:
                git.ensure_repo(Path(execution.workspace))
                execution.status = ExecutionStatus.EXECUTING
                execution.error = None
                self._save(execution, "execution.resumed" if resumed else "execution.running")
                while True:
                    outcome = self._run_stage(execution)
                    if outcome is not None:
                        return outcome
        finally:
            self._lease = None
            self._release(execution)

    def _run_stage(self, execution: Execution) -> Execution | None:
        """Run the current stage; return the execution when it stops, None to go on."""
        plan = execution.plan
        stage = plan.stages[execution.stage]
        self._emit(execution, "stage.started", stage.name, stage=stage.index)
        results = self._execute_graph(execution)
        if self.store.execution_status(execution.id) is ExecutionStatus.CANCELLED:
            return self.get(execution.id)
        failed = [r for r in results.values() if r.status is TaskStatus.FAILED]
        if failed:
            execution.status = ExecutionStatus.FAILED
            execution.error = f"task {failed[0].task_id!r} failed: {failed[0].error}"
            self._save(execution, "execution.failed", execution.error, stage=stage.index)
            return execution
        gate = self._gate(execution, results)
        if not gate.passed:
            execution.status = ExecutionStatus.GATE_FAILED
            names = ", ".join(r.rule for r in gate.rules if not r.passed)
            execution.error = f"quality gate failed: {names}"
            self._save(
                execution,
                "gate.failed",
                execution.error,
                stage=stage.index,
                data={"gate": gate.to_api()},
            )
            return execution
        if stage.gates:
            self._emit(execution, "gate.passed", f"score {gate.score}", stage=stage.index)
        if stage.checkpoint is not None:
            checkpoint = CheckpointState(
                execution_id=execution.id,
                stage=stage.index,
                round=execution.round,
                type=stage.checkpoint.type,
                question=stage.checkpoint.question,
                options=stage.checkpoint.options,
                artifacts=[
                    a for tid in stage.task_ids if tid in results for a in results[tid].artifacts
                ],
            )
            self.store.save_checkpoint(checkpoint)
            execution.status = ExecutionStatus.AWAITING_CHECKPOINT
            self._save(
                execution,
                "checkpoint.reached",
                checkpoint.question,
                stage=stage.index,
                data={"type": checkpoint.type},
            )
            return execution
        return self._advance(execution)

    def _advance(self, execution: Execution) -> Execution | None:
        if execution.stage + 1 >= len(execution.plan.stages):
            execution.status = ExecutionStatus.COMPLETED
            self._save(execution, "execution.completed", "all stages done")
            return execution
        execution.stage += 1
        self._save(execution, "execution.advanced", f"stage {execution.stage}")
        return None

    def _execute_graph(self, execution: Execution) -> dict[str, TaskResult]:
        """Run the stage's unfinished tasks as one Dask graph; return every task's result."""
        plan = execution.plan
        stage_ids = plan.stages[execution.stage].task_ids
        current = {r.task_id: r for r in self.store.task_results(execution.id, execution.round)}
        latest = {r.task_id: r for r in self.store.task_results(execution.id)}
        engine = self.settings.engine
        calls: dict[str, TaskCall] = {}
        for tid in stage_ids:
            prev = current.get(tid)
            if prev is not None and prev.status is TaskStatus.SUCCEEDED:
                continue
            if prev is None:
                first = 1
            elif prev.status in (TaskStatus.RUNNING, TaskStatus.SKIPPED):
                # Interrupted mid-attempt, or never tried: that attempt number runs now.
                first = prev.attempt
            else:
                first = prev.attempt + 1
            calls[tid] = TaskCall(
                store_url=self.store_url,
                execution_id=execution.id,
                round=execution.round,
                task_id=tid,
                first_attempt=first,
                retry_backoff=engine.retry_backoff,
                retry_backoff_max=engine.retry_backoff_max,
                default_timeout=engine.default_timeout,
            )
        if calls:
            known = {tid: public_result(r) for tid, r in latest.items() if tid not in calls}
            dsk, keys = stage_graph(plan, execution.stage, calls, known)
            futures = self.client.get(dsk, keys, sync=False)
            if self._lease is not None:
                self._lease.futures = futures
            self._wait(execution, calls, futures)
        final = {r.task_id: r for r in self.store.task_results(execution.id, execution.round)}
        return {tid: final[tid] for tid in stage_ids if tid in final}

    def _wait(
        self, execution: Execution, calls: dict[str, TaskCall], futures: list[Future]
    ) -> None:
        """Wait for the stage, make every worker write its task records, record crashes."""
        # One gather, as a plain Dask run would: results come back when all are done.
        with contextlib.suppress(CancelledError, FutureCancelledError):
            self.client.gather(futures, errors="skip")
        try:
            self.client.run(flush_task_log, self.store_url)
            flush_task_log(self.store_url)  # tasks run in this process (threads-only cluster)
        except Exception as exc:
            # The stage is left executing with no owner: `connectsw resume` retries it.
            raise StoreError(
                f"task records could not be written: {type(exc).__name__}: {exc}"
            ) from None
        lost: list[TaskResult] = []
        by_key = {task_key(execution.id, execution.round, t): c for t, c in calls.items()}
        for future in futures:
            if future.status == "finished":
                continue
            # The worker died or the stage was cancelled: that attempt never ended.
            call = by_key[str(future.key)]
            error = (
                one_line(future.exception(), typed=True)
                if future.status == "error"
                else "cancelled"
            )
            lost.append(
                TaskResult(
                    execution_id=execution.id,
                    task_id=call.task_id,
                    round=execution.round,
                    attempt=call.first_attempt,
                    status=TaskStatus.FAILED,
                    error=error,
                    finished_at=utcnow(),
                )
            )
        if lost:
            events = [
                Event(
                    execution_id=execution.id,
                    kind="task.failed",
                    task_id=r.task_id,
                    message=r.error or "",
                )
                for r in lost
            ]
            dispatch(self.store.save_task_results(lost, events))

    def _gate(self, execution: Execution, results: dict[str, TaskResult]) -> GateResult:
        stage = execution.plan.stages[execution.stage]
        ctx = GateContext(
            execution=execution,
            stage=stage,
            workspace=Path(execution.workspace),
            results=results,
            config=self.settings.gates.model_dump(),
        )
        gate = evaluate_stage(ctx, self.registries)
        if stage.gates:
            self.store.save_gate_result(execution.id, execution.round, gate)
        return gate

    # -- deciding ---------------------------------------------------------------
    def decide(
        self, execution_id: str, decision: Decision, feedback: str | None = None, by: str = "user"
    ) -> Execution:
        """Record a decision at the current checkpoint; the next ``run`` acts on it."""
        execution = self.get(execution_id)
        status = execution.status
        if status.finished:
            raise InvalidState(f"execution {execution_id} is already {status.value}")
        if decision is Decision.CANCEL:
            execution.status = ExecutionStatus.CANCELLED
            self._record_decision(execution, decision, feedback, by)
            self._save(execution, "execution.cancelled", feedback or "cancelled")
            return execution
        allowed = {ExecutionStatus.AWAITING_CHECKPOINT}
        if decision is Decision.REQUEST_CHANGES:
            allowed |= {ExecutionStatus.GATE_FAILED, ExecutionStatus.FAILED}
        if status not in allowed:
            shown = self.status(execution).value
            raise InvalidState(
                f"execution {execution_id} is {shown}, not waiting at a checkpoint"
                + (
                    f"; run `connectsw resume {execution_id}` first"
                    if shown == "interrupted"
                    else ""
                )
            )
        if decision is Decision.REQUEST_CHANGES and not (feedback or "").strip():
            raise InvalidState("request_changes needs feedback saying what to change")
        self._record_decision(execution, decision, feedback, by)
        if decision is Decision.APPROVE:
            if feedback:
                execution.feedback.append(feedback)
            nxt = self._advance(execution)
            if nxt is None:
                execution.status = ExecutionStatus.EXECUTING
                self._save(execution, "execution.approved", feedback or "approved")
            return execution
        execution.round += 1
        execution.feedback.append(feedback or "")
        execution.status = ExecutionStatus.EXECUTING
        self._save(execution, "execution.changes_requested", feedback or "")
        return execution

    def _record_decision(
        self, execution: Execution, decision: Decision, feedback: str | None, by: str
    ) -> None:
        cp = self.current_checkpoint(execution)
        if cp is None or execution.status is not ExecutionStatus.AWAITING_CHECKPOINT:
            return
        cp.decision, cp.feedback, cp.decided_at = decision, feedback, utcnow()
        self.store.save_checkpoint(cp)
        self._emit(
            execution,
            "checkpoint.decided",
            decision.value,
            stage=cp.stage,
            data={"type": cp.type, "decision": decision.value, "feedback": feedback, "by": by},
        )

    # -- ownership and events ------------------------------------------------------
    def _claim(self, execution: Execution) -> None:
        lease = self.settings.engine.lease_timeout
        if (
            execution.owner
            and execution.owner != self.owner
            and owner_alive(execution.owner, execution.heartbeat_at, lease)
        ):
            raise InvalidState(f"execution {execution.id} is being run by {execution.owner}")
        if not self.store.claim_execution(execution.id, self.owner, execution.owner, utcnow()):
            raise InvalidState(f"execution {execution.id} was taken over by another process")
        execution.owner = self.owner

    def _release(self, execution: Execution) -> None:
        self.store.claim_execution(execution.id, None, self.owner, utcnow())

    def _save(
        self,
        execution: Execution,
        kind: str,
        message: str = "",
        *,
        stage: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Persist the execution together with the event describing its change."""
        execution.updated_at = utcnow()
        event = _event(execution, kind, message, stage, data)
        dispatch(self.store.save_execution(execution, [event]))

    def _emit(
        self,
        execution: Execution,
        kind: str,
        message: str = "",
        *,
        stage: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append an event that changes no execution field."""
        dispatch(self.store.add_events([_event(execution, kind, message, stage, data)]))


def _event(
    execution: Execution,
    kind: str,
    message: str,
    stage: int | None,
    data: dict[str, Any] | None,
) -> Event:
    return Event(
        execution_id=execution.id,
        kind=kind,
        message=message,
        stage=execution.stage if stage is None else stage,
        data=data or {},
    )


class _Lease:
    """While a process runs an execution: heartbeat its lease; cancel running work on cancel."""

    def __init__(self, engine: Engine, execution: Execution) -> None:
        self.engine = engine
        self.execution_id = execution.id
        self.futures: list[Future] = []  # the stage running now, if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="connectsw-lease", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        engine = self.engine
        while not self._stop.wait(engine.settings.engine.heartbeat_interval):
            try:
                engine.store.heartbeat(self.execution_id, engine.owner, utcnow())
                status = engine.store.execution_status(self.execution_id)
                if status is ExecutionStatus.CANCELLED and self.futures:
                    engine.client.cancel(self.futures)
                    self.futures = []
            except Exception:  # a missed heartbeat is retried at the next tick
                log.exception("heartbeat failed for %s", self.execution_id)
