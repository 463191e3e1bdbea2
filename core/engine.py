"""The execution engine: persists plans, runs stages on Dask, stops at checkpoints.

State lives in the store, never only in this process: a stage interrupted by a
crash is continued by the next ``run`` (any process), which runs only the tasks
that had not succeeded. The roles are split: :mod:`~connectsw.core.views`
reads, :mod:`~connectsw.core.lease` holds the owner's lease (fencing token),
:mod:`~connectsw.core.stage` runs a stage's graph; this module moves an
execution through the state table (:mod:`~connectsw.core.states`), one
conditional store transition per state change, hooks called after the commit.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectsw.conf.settings import Settings
from connectsw.core import workspace as git
from connectsw.core.errors import Cancelled, Conflict, ConnectSWError, InvalidState
from connectsw.core.events import dispatch
from connectsw.core.gate_run import GateRun
from connectsw.core.lease import Lease
from connectsw.core.leftovers import end_attempt_groups, end_leftovers, record_never_run
from connectsw.core.liveness import owner_alive, this_owner
from connectsw.core.memory_auto import context_for_stage, remember_checkpoint, remember_feedback
from connectsw.core.models import (
    CheckpointState,
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
    check_user_text,
    utcnow,
)
from connectsw.core.monitor import LEASE_LOST
from connectsw.core.planner import Planner
from connectsw.core.runner import event_text
from connectsw.core.states import DECIDABLE, FINISHED, RUNNABLE, EventKind, check_execution
from connectsw.core.stores import Store, get_store
from connectsw.core.views import Views
from connectsw.core.wording import counted
from connectsw.plugins.registry import Registries, get_registries

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

log = logging.getLogger("connectsw.engine")

E = ExecutionStatus
#: How long ``cancel`` waits, past the lease timeout, for running work to stop (seconds).
CANCEL_GRACE = 10.0
#: Seconds ``cancel`` lets the workers stop running attempts before it ends their
#: recorded process groups itself (issue 5 kind 1: a stopped worker never answers).
WORKER_ANSWER_GRACE = 5.0


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
        self._registries = registries
        self._client = client
        self._owns_client = client is None
        self._cluster: LocalCluster | None = None
        self.owner = this_owner()
        #: The stage running now (stopped on Ctrl-C, :meth:`_stop_interrupted`).
        self._stage_run: Any = None
        self.views = Views(self.store, settings.engine.lease_timeout)

    @property
    def registries(self) -> Registries:
        """What the plugins registered (loaded on first use)."""
        if self._registries is None:
            self._registries = get_registries()
        return self._registries

    @registries.setter
    def registries(self, value: Registries) -> None:
        self._registries = value

    # -- cluster ---------------------------------------------------------------
    @property
    def client(self) -> Client:
        """The Dask client, connecting (or starting a LocalCluster) on first use."""
        if self._client is None:
            from connectsw.core.cluster import connect, quiet_dask_logs

            quiet_dask_logs()
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

    # -- reading (see Views) ---------------------------------------------------------
    def get(self, execution_id: str) -> Execution:
        """The execution, or :class:`NotFound`."""
        return self.views.get(execution_id)

    def status(self, execution: Execution) -> ExecutionStatus:
        """The execution's status as shown to users (INTERRUPTED if its owner died)."""
        return self.views.status(execution)

    def view(self, execution_id: str) -> ExecutionView:
        """The API's ``GET /v1/execution/{id}`` body."""
        return self.views.view(execution_id)

    def task_states(self, execution: Execution) -> dict[str, TaskStatus]:
        """Latest state of every task of the plan (pending if never started)."""
        return self.views.task_states(execution)

    def current_checkpoint(self, execution: Execution) -> CheckpointState | None:
        """The checkpoint of the current stage and round, if reached."""
        return self.views.current_checkpoint(execution)

    # -- submitting ------------------------------------------------------------
    def plan(
        self, request: Request, workspace: Path, *, license_id: str | None = None, **options: Any
    ) -> Execution:
        """Plan ``request`` as an execution that is not persisted (``--plan-only``), with
        what the history says applied (:func:`connectsw.core.learning.learn_plan`:
        estimates, extra retries, the project's preferences). Raises WorkspaceError for
        a workspace that is, or lies under, a broken symbolic link."""
        from connectsw.core.learning import learn_plan
        from connectsw.core.workspace import check_links

        check_links(workspace)  # before it is resolved: a broken link is not followed
        _, plan = Planner(self.registries).plan(request, **options)
        execution = Execution(
            request=request, plan=plan, workspace=str(workspace.resolve()), license_id=license_id
        )
        execution.plan = learn_plan(execution, self.store, self.settings)
        return execution

    def submit(
        self,
        request: Request,
        workspace: Path,
        *,
        license_id: str | None = None,
        execution_id: str | None = None,
        **options: Any,
    ) -> Execution:
        """Plan ``request`` and persist it as a pending execution (nothing runs yet);
        ``license_id`` names the license that owns it (server mode), ``execution_id``
        the id to use (default: a new one).

        Input errors are refused before anything is stored (exit 2, nothing left to
        resume): the configuration (:meth:`check_config`), the plan, and a workspace
        that cannot be used (a file, under a file, not writable, a name too long:
        :func:`connectsw.core.workspace.check_usable`, which creates it), and an
        external scheduler that cannot be used (unreachable, not Dask, no worker within
        ``dask.worker_wait``: :func:`connectsw.core.cluster.connect`), connected now."""
        self.check_config()
        execution = self.plan(request, workspace, license_id=license_id, **options)
        git.check_usable(workspace)
        if self.settings.dask.scheduler_address:
            self.client  # noqa: B018 - connect now: a ConfigError stores nothing
        if execution_id is not None:
            execution.id = execution_id
        plan = execution.plan
        message = f"plan {plan.name}: {counted(len(plan.tasks), 'task')}"
        event = _event(execution, EventKind.EXECUTION_CREATED, message)
        dispatch(self.store.create_execution(execution, [event]))
        return execution

    def check_config(self) -> None:
        """Refuse the configuration errors of this process before an execution is stored:
        a malformed ``dask.scheduler_address``
        (:func:`connectsw.core.cluster.parse_scheduler_address`) and a
        ``CONNECTSW_GRANT_KEY_FILE`` that cannot be used
        (:func:`connectsw.core.grants.engine_signer`). Raises ConfigError (exit 2);
        an external scheduler is reached by :meth:`submit` once the plan is made."""
        from connectsw.core.grants import engine_signer

        address = self.settings.dask.scheduler_address
        if address:
            from connectsw.core.cluster import parse_scheduler_address

            parse_scheduler_address(address)
        engine_signer()

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
        """Run from where the execution stands until a checkpoint, a failure or the end.

        When it was cancelled meanwhile, its running work (tasks, a gate's
        command) is stopped and its tasks that never ran are recorded
        ``cancelled`` before the lease is released. Raises
        :class:`~connectsw.core.errors.LeaseLost` if another process took the
        execution over meanwhile (this one then stopped its work), and
        :class:`~connectsw.core.errors.HeldElsewhere` (an :class:`InvalidState`)
        if a live process runs it or claimed it first.
        """
        execution = self.get(execution_id)
        if execution.status not in RUNNABLE:
            return execution
        resumed = execution.owner is not None or execution.status in (E.FAILED, E.GATE_FAILED)
        engine = self.settings.engine
        lease = Lease.claim(
            self.store, execution, self.owner, engine.lease_timeout, engine.heartbeat_interval
        )
        self._stage_run = None
        with lease:
            try:
                # A previous owner's attempts and gate still running end before anything reruns.
                end_leftovers(
                    self.store,
                    execution.id,
                    lease.token,
                    TaskStatus.INTERRUPTED,
                    "interrupted: the process running it ended first; a new attempt runs",
                )
                try:  # a failed start is recorded, never left pending
                    self._check_workspace(execution)
                    git.ensure_repo(Path(execution.workspace))
                    self.client  # noqa: B018 - connect (or start the cluster) now
                    from connectsw.core.grants import engine_signer

                    engine_signer()  # a grant key file that cannot be used: said now
                except ConnectSWError as exc:
                    error = f"could not start: {exc}"
                    self._move(
                        execution, lease, E.FAILED, EventKind.EXECUTION_FAILED, error, error=error
                    )
                    raise
                kind = EventKind.EXECUTION_RESUMED if resumed else EventKind.EXECUTION_RUNNING
                self._move(execution, lease, E.EXECUTING, kind, error=None)
                while not self._run_stage(execution, lease):
                    pass
            except KeyboardInterrupt:
                # Ctrl-C: this owner stops its work before it lets the lease go.
                self._stop_interrupted(execution, lease)
                raise
            except Conflict:
                pass  # cancelled (or decided) by another process meanwhile: that state stands
            if self.store.execution_status(execution_id) is E.CANCELLED:
                # Nothing of it runs any more: what never ran never will.
                record_never_run(self.store, execution, lease.token)
        return self.get(execution_id)

    def _stop_interrupted(self, execution: Execution, lease: Lease) -> None:
        """End this owner's running work on a user interrupt (Ctrl-C), before the lease
        is released and the CLI says how to resume: the stage's attempts are stopped
        by their workers (:meth:`StageRun.interrupt`), and what still runs (a worker
        that did not answer, a gate's command) has its process group ended (TERM,
        grace, KILL) here; those attempts are recorded ``interrupted`` (the next run
        uses a new attempt number) and commit nothing. A second Ctrl-C meanwhile is
        held until this is done (a few seconds at most)."""
        from connectsw.core.cluster import ctrl_c_held

        with ctrl_c_held():
            try:
                run, self._stage_run = self._stage_run, None
                if run is not None:
                    run.interrupt()
                end_leftovers(
                    self.store,
                    execution.id,
                    lease.token,
                    TaskStatus.INTERRUPTED,
                    "interrupted: stopped by Ctrl-C; a new attempt runs",
                )
            except Exception as exc:  # the next owner ends what is left (end_leftovers)
                log.warning("could not stop the work of %s: %s", execution.id, exc)

    def _check_workspace(self, execution: Execution) -> None:
        """Once tasks ran in the workspace, it must still be there, with the latest of
        their commits: a moved or deleted workspace is never re-created empty, nor is
        another repository at the same path used (WorkspaceError, exit 2). A new
        execution's workspace is created by :func:`~connectsw.core.workspace.ensure_repo`."""
        results = self.store.task_results(execution.id)
        if not results:
            return
        committed = [r for r in results if r.commit]
        latest = (
            max(committed, key=lambda r: r.finished_at or r.started_at or utcnow()).commit
            if committed
            else None
        )
        git.check_still_there(Path(execution.workspace), latest)

    def _run_stage(self, execution: Execution, lease: Lease) -> bool:
        """Run the current stage; True when the execution stopped, False to go on."""
        from connectsw.core.stage import StageRun

        stage = execution.plan.stages[execution.stage]
        self._emit(execution, lease, EventKind.STAGE_STARTED, stage.name)
        agents = self.registries.agents
        memories = context_for_stage(self.settings, execution, agents.items)
        # As the runner decides: an agent that is not brief records its start before it runs.
        durable = frozenset(
            t.id
            for t in execution.plan.tasks
            if t.stage == stage.index and not getattr(agents.get(t.agent), "brief", False)
        )
        run = StageRun(
            self.store,
            self.store_url,
            self.client,
            self.settings.engine,
            execution,
            lease,
            memories=memories,
            durable_starts=durable,
            worker_wait=self.settings.dask.worker_wait,
        )
        lease.on_stop = run.cancel
        self._stage_run = run  # kept when run() raises: a Ctrl-C stops it (_stop_interrupted)
        try:
            results = run.run()
        finally:
            lease.on_stop = None
        self._stage_run = None
        if self._cancelled(execution, lease):
            return True
        failed = [r for r in results.values() if r.status is not TaskStatus.SUCCEEDED]
        failed.sort(key=lambda r: r.status is TaskStatus.SKIPPED)  # the cause first
        if failed:
            # Bounded like the task's error (a record written before that bound may be huge).
            cause = event_text(failed[0].error or "")
            error = f"task {failed[0].task_id!r} {failed[0].status.value}: {cause}"
            self._move(execution, lease, E.FAILED, EventKind.EXECUTION_FAILED, error, error=error)
            return True
        gate, stopped = self._gate(execution, results, lease)
        if stopped == LEASE_LOST:
            lease.lost.set()  # learnt by this process's monitor before the heartbeat
            lease.check()
        if self._cancelled(execution, lease):
            if gate.rules:  # stopped by the cancel (or done just before): no verdict kept
                self._emit(execution, lease, EventKind.GATE_STOPPED, "stopped: cancelled")
            return True
        if not gate.passed:
            return self._gate_failed(execution, lease, gate)
        if gate.rules:
            self._emit(execution, lease, EventKind.GATE_PASSED, f"score {gate.score}")
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
            # Remembered first: once the checkpoint shows, its documents can be recalled.
            remember_checkpoint(self.settings, execution, checkpoint)
            self._move(
                execution,
                lease,
                E.AWAITING_CHECKPOINT,
                EventKind.CHECKPOINT_REACHED,
                checkpoint.question,
                data={"type": checkpoint.type},
                checkpoint=checkpoint,
                gate=(execution.round, gate) if gate.rules else None,
                remediations=0,
            )
            return True
        if execution.stage + 1 >= len(execution.plan.stages):
            self._move(
                execution,
                lease,
                E.COMPLETED,
                EventKind.EXECUTION_COMPLETED,
                "all stages done",
                gate=(execution.round, gate) if gate.rules else None,
            )
            return True
        self._move(
            execution,
            lease,
            E.EXECUTING,
            EventKind.EXECUTION_ADVANCED,
            f"stage {execution.stage + 1}",
            stage=execution.stage + 1,
            gate=(execution.round, gate) if gate.rules else None,
            remediations=0,
        )
        return False

    def _gate_failed(self, execution: Execution, lease: Lease, gate: GateResult) -> bool:
        """A failed gate: back to the stage's agents with the remediation as feedback (a new
        round), up to ``gates.remediation_rounds`` times; then stop for a person
        (``gate_failed``, the gate's evidence in the view). True when the execution stopped.

        A rule that crashed (a plugin's bug) or is not installed stops for a person at
        once: no round of the stage's agents can fix it (issue 9, B6)."""
        from connectsw.gates.engine import remediation_feedback, unfixable

        names = ", ".join(r.rule for r in gate.rules if not r.passed)
        error = f"quality gate failed: {names}"
        rounds = self.settings.gates.remediation_rounds
        done = execution.remediations
        broken = unfixable(gate)
        if broken:
            why = ", ".join(f"{rule} {reason}" for rule, reason in broken.items())
            error += f" ({why}: a plugin's fault, which remediation rounds cannot fix)"
        elif done < rounds:
            feedback = remediation_feedback(gate, done + 1, rounds)
            self._move(
                execution,
                lease,
                E.EXECUTING,
                EventKind.GATE_FAILED,
                f"{error}; the stage runs again with the remediation ({done + 1} of {rounds})",
                data={"gate": gate.to_api(), "remediation": done + 1, "feedback": feedback},
                gate=(execution.round, gate),
                round=execution.round + 1,
                feedback=[*execution.feedback, feedback],
                remediations=done + 1,
                error=None,
            )
            return False
        elif rounds:
            error += f" (after {rounds} remediation round{'s' if rounds > 1 else ''})"
        self._move(
            execution,
            lease,
            E.GATE_FAILED,
            EventKind.GATE_FAILED,
            error,
            error=error,
            data={"gate": gate.to_api()},
            gate=(execution.round, gate),
        )
        return True

    def _cancelled(self, execution: Execution, lease: Lease) -> bool:
        """True (and ``execution.status`` set) if the execution was cancelled meanwhile."""
        if lease.cancelled.is_set() or self.store.execution_status(execution.id) is E.CANCELLED:
            execution.status = E.CANCELLED
            return True
        return False

    def _gate(
        self, execution: Execution, results: dict[str, TaskResult], lease: Lease
    ) -> tuple[GateResult, str | None]:
        """Evaluate the stage's gates; the result, and why they were stopped (or None)."""
        from connectsw.gates.base import GateContext
        from connectsw.gates.engine import evaluate_stage

        stage = execution.plan.stages[execution.stage]
        with GateRun(self.store, execution.id, lease) as run:
            ctx = GateContext(
                execution=execution,
                stage=stage,
                workspace=Path(execution.workspace),
                results=results,
                config=self.settings.gates.model_dump(),
                should_stop=run.should_stop,
                on_spawn=run.on_spawn,
                artifact_dir=self.settings.data_dir.expanduser() / "gates" / execution.id,
            )
            gate = evaluate_stage(ctx, self.registries)
            return gate, run.should_stop()

    # -- deciding ---------------------------------------------------------------
    def _check_installed(self, execution: Execution, first: int) -> None:
        """Refuse a decision whose next stages need an agent or gate rule that is not
        installed (a plugin uninstalled while the execution waited): nothing is
        decided. Raises :class:`PluginError` (exit 3) naming a plugin that failed to
        load and may provide it, else :class:`InvalidState`."""
        plan = execution.plan
        later = {s.index for s in plan.stages if s.index >= first}
        missing = [("agent", t.agent) for t in plan.tasks if t.stage in later]
        missing += [("gate rule", g) for s in plan.stages if s.index in later for g in s.gates]
        registry = {"agent": self.registries.agents, "gate rule": self.registries.gates}
        for kind, name in missing:
            if name not in registry[kind]:
                raise self.registries.unknown_error(
                    kind,
                    name,
                    f"execution {execution.id}: the next stages need {kind} {name!r}, which is"
                    " not installed (was its plugin uninstalled?); nothing was decided:"
                    " reinstall it, then decide again",
                    InvalidState,
                )

    def decide(
        self, execution_id: str, decision: Decision, feedback: str | None = None, by: str = "user"
    ) -> Execution:
        """Record a decision at the current checkpoint; the next ``run`` acts on it.

        One conditional update: of two decisions at once, one wins and the
        other raises :class:`~connectsw.core.errors.Conflict` (exit 5, "already
        decided"). Event hooks run after the commit.

        Raises:
            InvalidInput: ``feedback`` longer than :data:`MAX_USER_TEXT` characters.
        """
        check_user_text("feedback", feedback)
        if decision is Decision.CANCEL:
            return self.cancel(execution_id, feedback, by=by, wait=False)
        execution = self.get(execution_id)
        status = execution.status
        if status is E.CANCELLED:
            raise Cancelled(f"execution {execution_id} was cancelled")
        if status in FINISHED:
            raise InvalidState(f"execution {execution_id} is already {status.value}")
        if status not in DECIDABLE[decision.value]:
            shown = self.status(execution).value
            decided = [cp for cp in self.store.checkpoints(execution_id) if cp.decision]
            if decided and status is E.EXECUTING:  # someone decided just before
                last = max(decided, key=lambda cp: cp.decided_at or cp.created_at)
                assert last.decision is not None
                raise Conflict(
                    f"execution {execution_id} was already decided: {last.decision.value}"
                    f" at checkpoint {last.type} (now {shown})"
                )
            hint = (
                f"; run `connectsw resume {execution_id}` first" if shown == "interrupted" else ""
            )
            raise InvalidState(
                f"execution {execution_id} is {shown}, not waiting at a checkpoint{hint}"
            )
        if decision is Decision.REQUEST_CHANGES and not (feedback or "").strip():
            raise InvalidState("request_changes needs feedback saying what to change")
        first = execution.stage + (1 if decision is Decision.APPROVE else 0)
        self._check_installed(execution, first)
        new = execution.model_copy(deep=True)
        events: list[Event] = []
        cp = self.current_checkpoint(execution) if status is E.AWAITING_CHECKPOINT else None
        if cp is not None:
            cp.decision, cp.feedback, cp.decided_at = decision, feedback, utcnow()
            events.append(
                _event(
                    new,
                    EventKind.CHECKPOINT_DECIDED,
                    decision.value,
                    stage=cp.stage,
                    data={
                        "type": cp.type,
                        "decision": decision.value,
                        "feedback": feedback,
                        "by": by,
                    },
                )
            )
        if decision is Decision.APPROVE:
            if feedback:
                new.feedback.append(feedback)
            if new.stage + 1 >= len(new.plan.stages):
                new.status = E.COMPLETED
                kind, message = EventKind.EXECUTION_COMPLETED, "all stages done"
            else:
                new.stage += 1
                new.status = E.EXECUTING
                kind, message = EventKind.EXECUTION_APPROVED, feedback or "approved"
        else:
            new.round += 1
            new.feedback.append(feedback or "")
            new.status = E.EXECUTING
            kind, message = EventKind.EXECUTION_CHANGES_REQUESTED, feedback or ""
        check_execution(status, new.status)
        new.error = None
        new.remediations = 0  # a person decided: the stage gets its remediation rounds again
        new.updated_at = utcnow()
        events.append(_event(new, kind, message))
        try:
            written = self.store.transition(
                new, {status}, events, checkpoint=cp, decide=cp is not None
            )
        except Conflict:
            now = self.store.execution_status(execution_id)
            shown = now.value if now is not None else "gone"
            raise Conflict(
                f"execution {execution_id} was already decided by someone else (now {shown})"
            ) from None
        dispatch(written)
        if cp is not None:
            remember_feedback(self.settings, new, cp)
        return new

    def cancel(
        self, execution_id: str, reason: str | None = None, *, by: str = "user", wait: bool = True
    ) -> Execution:
        """Cancel the execution; with ``wait``, return once its running work has stopped.

        Tasks that never started are recorded ``cancelled``; running attempts are
        stopped by their workers (process groups ended) and recorded ``cancelled``;
        a dead owner's leftovers are ended here. Cancelling a cancelled execution
        returns it (waiting, with ``wait``). Raises :class:`InvalidState` if the
        execution completed or failed, :class:`InvalidInput` if ``reason`` is longer
        than :data:`MAX_USER_TEXT` characters.
        """
        check_user_text("reason", reason)
        for _ in range(20):  # the status may move on between the read and the update
            execution = self.get(execution_id)
            status = execution.status
            if status is E.CANCELLED:  # cancelling twice is what was asked: done
                if wait:
                    self._wait_stopped(execution_id)
                return self.get(execution_id)
            if status in FINISHED:
                raise InvalidState(f"execution {execution_id} is already {status.value}")
            new = execution.model_copy(deep=True)
            new.status = E.CANCELLED
            new.updated_at = utcnow()
            events = []
            cp = self.current_checkpoint(execution) if status is E.AWAITING_CHECKPOINT else None
            if cp is not None and cp.decision is None:
                cp.decision, cp.feedback, cp.decided_at = Decision.CANCEL, reason, utcnow()
                events.append(
                    _event(
                        new,
                        EventKind.CHECKPOINT_DECIDED,
                        Decision.CANCEL.value,
                        stage=cp.stage,
                        data={"type": cp.type, "decision": "cancel", "feedback": reason, "by": by},
                    )
                )
            else:
                cp = None
            events.append(_event(new, EventKind.EXECUTION_CANCELLED, reason or "cancelled"))
            check_execution(status, E.CANCELLED)
            try:
                written = self.store.transition(
                    new, {status}, events, checkpoint=cp, decide=cp is not None
                )
            except Conflict:
                continue
            dispatch(written)
            if wait:
                self._wait_stopped(execution_id)
            elif not self._owner_alive(execution):
                record_never_run(self.store, new, None)  # nothing runs it: it never will
            return self.get(execution_id)
        raise Conflict(f"execution {execution_id} kept changing; try again")

    def _wait_stopped(self, execution_id: str) -> None:
        """Wait until the owner released the execution (or died) and nothing runs."""
        engine = self.settings.engine
        started = time.monotonic()
        deadline = started + engine.lease_timeout + CANCEL_GRACE
        ended_groups = False
        while time.monotonic() < deadline:
            execution = self.get(execution_id)
            if not self._owner_alive(execution):
                # No live owner: its leftovers (if any) are ended here; nothing runs now.
                end_leftovers(
                    self.store, execution_id, None, TaskStatus.CANCELLED, "stopped: cancelled"
                )
                record_never_run(self.store, execution, None)
                return
            if not ended_groups and time.monotonic() - started >= WORKER_ANSWER_GRACE:
                # The owner lives but its workers have not stopped the work (a worker
                # stopped with SIGSTOP, or hung): end the attempts' groups from here.
                ended_groups = True
                running = self.store.running_attempts(execution_id)
                if end_attempt_groups(running) and all(a.process for a in running):
                    log.warning(
                        "execution %s: a worker did not stop its work within %g s of the "
                        "cancel; its commands were ended here (their attempts are recorded "
                        "when the worker answers)",
                        execution_id,
                        WORKER_ANSWER_GRACE,
                    )
                    return
            time.sleep(0.1)
        log.warning("execution %s: work still stopping after cancel", execution_id)

    def _owner_alive(self, execution: Execution) -> bool:
        """True if a live process holds the execution's lease."""
        return execution.owner is not None and owner_alive(
            execution.owner, execution.heartbeat_at, self.settings.engine.lease_timeout
        )

    # -- state changes ------------------------------------------------------------------
    def _move(
        self,
        execution: Execution,
        lease: Lease,
        status: ExecutionStatus,
        kind: EventKind,
        message: str = "",
        *,
        stage: int | None = None,
        data: dict[str, Any] | None = None,
        checkpoint: CheckpointState | None = None,
        gate: tuple[int, GateResult] | None = None,
        **fields: Any,
    ) -> None:
        """Move the execution to ``status`` (checked against the state table), fenced."""
        check_execution(execution.status, status)
        new = execution.model_copy()  # shallow: fields below are replaced, never mutated
        new.status = status
        if stage is not None:
            new.stage = stage
        for name, value in fields.items():
            setattr(new, name, value)
        new.updated_at = utcnow()
        event = _event(new, kind, message, data=data)
        written = self.store.transition(
            new, {execution.status}, [event], token=lease.token, checkpoint=checkpoint, gate=gate
        )
        for name in ("status", "stage", "error", "updated_at", *fields):
            setattr(execution, name, getattr(new, name))
        dispatch(written)

    def _emit(self, execution: Execution, lease: Lease, kind: EventKind, message: str = "") -> None:
        """Append an event that changes no execution field (fenced)."""
        dispatch(self.store.add_events([_event(execution, kind, message)], token=lease.token))


def _event(
    execution: Execution,
    kind: str,
    message: str,
    *,
    stage: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    return Event(
        execution_id=execution.id,
        kind=str(kind),
        message=message,
        stage=execution.stage if stage is None else stage,
        data=data or {},
    )
