"""The engine on a real Dask cluster: parallel stages, retries, timeouts, checkpoints, gates.

Each test runs twice: on the embedded SQLite store and on PostgreSQL.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from distributed import LocalCluster

from connectsw.conf.settings import Settings
from connectsw.core import workspace as git
from connectsw.core.engine import Engine
from connectsw.core.errors import Cancelled, HeldElsewhere, InvalidState
from connectsw.core.models import Decision, Execution, ExecutionStatus, TaskStatus
from tests.gates.workspaces import OK_SERVER

Submit = Callable[..., Execution]


# Every engine test runs on the embedded store and on a real PostgreSQL.
pytestmark = pytest.mark.both_stores


def kinds(engine: Engine, execution_id: str, task_id: str | None = None) -> list[str]:
    return [
        e.kind for e in engine.store.events(execution_id) if task_id is None or e.task_id == task_id
    ]


def test_independent_tasks_run_in_parallel(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph(
        {
            "name": "par",
            "tasks": [
                {"id": "a", "agent": "sleep", "with": {"seconds": 0.8}},
                {"id": "b", "agent": "sleep", "with": {"seconds": 0.8}},
                {"id": "c", "agent": "noop", "needs": ["a", "b"]},
            ],
        }
    )
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.COMPLETED
    results = {r.task_id: r for r in engine.store.task_results(ex.id)}
    a, b = results["a"].outputs, results["b"].outputs
    # The two sleeps overlap in time: they ran at once, not one after the other.
    assert a["start"] < b["end"] and b["start"] < a["end"]
    assert results["c"].started_at is not None
    assert results["c"].started_at >= max(results["a"].finished_at, results["b"].finished_at)


def test_retries_with_backoff_until_success(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph(
        {
            "name": "flaky",
            "tasks": [{"id": "f", "agent": "flaky", "retries": 2, "with": {"succeed_on": 3}}],
        }
    )
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    attempts = engine.store.task_attempts(ex.id, "f")
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, TaskStatus.FAILED),
        (2, TaskStatus.FAILED),
        (3, TaskStatus.SUCCEEDED),
    ]
    assert attempts[0].error == "flaky failure on attempt 1"
    assert kinds(engine, ex.id, "f").count("task.retrying") == 2


def test_exhausted_retries_fail_the_execution_and_skip_dependents(
    engine: Engine, submit_graph: Submit
) -> None:
    ex = submit_graph(
        {
            "name": "fails",
            "tasks": [
                {"id": "bad", "agent": "boom", "retries": 1},
                {"id": "after", "agent": "noop", "needs": ["bad"]},
                {"id": "other", "agent": "noop"},
            ],
        }
    )
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    # an agent's bug names its plugin and the place it raised (issue 9)
    assert re.fullmatch(
        r"task 'bad' failed: agent \"boom\" of plugin \"test-agents\" raised "
        r"RuntimeError: kaboom \(conftest\.py:\d+\)",
        done.error or "",
    ), done.error
    states = engine.task_states(done)
    assert states == {
        "bad": TaskStatus.FAILED,
        "after": TaskStatus.SKIPPED,
        "other": TaskStatus.SUCCEEDED,
    }
    assert len(engine.store.task_attempts(ex.id, "bad")) == 2


def test_timeout_fails_the_attempt(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph(
        {
            "name": "slow",
            "tasks": [{"id": "s", "agent": "sleep", "timeout": 0.2, "with": {"seconds": 3}}],
        }
    )
    start = time.monotonic()
    done = engine.run(ex.id)
    assert time.monotonic() - start < 2.5
    assert done.status is ExecutionStatus.FAILED
    assert "timed out after 0.2s" in (done.error or "")


def test_checkpoint_pauses_durably_and_a_new_engine_approves(
    engine: Engine, submit_graph: Submit, settings: Settings, dask_client: object
) -> None:
    ex = submit_graph(
        {
            "name": "cp",
            "tasks": [
                {"id": "first", "agent": "notes"},
                {"id": "second", "agent": "notes", "needs": ["first"]},
            ],
            "checkpoints": [{"after": ["first"], "question": "First done. Go on?", "name": "one"}],
        }
    )
    paused = engine.run(ex.id)
    assert paused.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert engine.task_states(paused)["second"] is TaskStatus.PENDING
    view = engine.view(ex.id)
    assert view.checkpoint is not None
    assert view.checkpoint.type == "one"
    assert view.checkpoint.question == "First done. Go on?"
    assert [a.path for a in view.checkpoint.artifacts] == ["notes/first.txt"]

    # Another engine (as in another process) on the same store picks it up.
    other = Engine(settings, client=dask_client, registries=engine.registries)  # type: ignore[arg-type]
    assert other.get(ex.id).status is ExecutionStatus.AWAITING_CHECKPOINT
    with pytest.raises(InvalidState):
        other.decide(ex.id, Decision.REQUEST_CHANGES, "")
    other.decide(ex.id, Decision.APPROVE, "fine")
    done = other.run(ex.id)
    assert done.status is ExecutionStatus.COMPLETED
    cps = other.store.checkpoints(ex.id)
    assert [(c.type, c.decision, c.feedback) for c in cps] == [("one", Decision.APPROVE, "fine")]
    second = (Path(done.workspace) / "notes/second.txt").read_text()
    assert "upstream: first=succeeded" in second
    assert engine.view(ex.id).next_checkpoint is None


def test_request_changes_reruns_the_stage_with_feedback(
    engine: Engine, submit_graph: Submit
) -> None:
    ex = submit_graph(
        {
            "name": "rc",
            "tasks": [
                {"id": "prep", "agent": "notes"},
                {"id": "draft", "agent": "notes", "needs": ["prep"]},
            ],
            "checkpoints": [
                {"after": ["prep"], "question": "prep ok?"},
                {"after": ["draft"], "question": "draft ok?"},
            ],
        }
    )
    engine.run(ex.id)
    engine.decide(ex.id, Decision.APPROVE)
    assert engine.run(ex.id).stage == 1
    engine.decide(ex.id, Decision.REQUEST_CHANGES, "use shorter sentences")
    again = engine.run(ex.id)
    assert again.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert again.round == 1
    text = (Path(again.workspace) / "notes/draft.txt").read_text()
    assert "feedback: use shorter sentences" in text
    assert "round: 1" in text
    # The earlier stage is not re-run; the changed stage has one commit per round.
    assert len(engine.store.task_attempts(ex.id, "prep")) == 1
    subjects = git.log(Path(again.workspace))
    assert sum(s.startswith("draft:") for s in subjects) == 2
    assert sum(s.startswith("prep:") for s in subjects) == 1


def test_cancel_stops_everything(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph(
        {
            "name": "cancel",
            "tasks": [{"id": "a", "agent": "noop"}, {"id": "b", "agent": "noop", "needs": ["a"]}],
            "checkpoints": [{"after": ["a"], "question": "go?"}],
        }
    )
    engine.run(ex.id)
    cancelled = engine.decide(ex.id, Decision.CANCEL, "not needed")
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert engine.run(ex.id).status is ExecutionStatus.CANCELLED
    assert engine.task_states(engine.get(ex.id))["b"] is TaskStatus.CANCELLED  # never runs
    with pytest.raises(Cancelled, match="was cancelled") as info:
        engine.decide(ex.id, Decision.APPROVE)
    assert info.value.exit_code == 8  # the README's code for a cancelled execution
    # Cancelling again is what was asked: it returns the cancelled execution.
    assert engine.cancel(ex.id).status is ExecutionStatus.CANCELLED
    assert engine.decide(ex.id, Decision.CANCEL).status is ExecutionStatus.CANCELLED


def test_cancel_while_running_stops_the_stage(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph(
        {
            "name": "cancel-live",
            "tasks": [
                {"id": "long", "agent": "sleep", "with": {"seconds": 1.0}},
                {"id": "later", "agent": "sleep", "needs": ["long"], "with": {"seconds": 5}},
            ],
        }
    )
    timer = threading.Timer(0.5, engine.decide, args=(ex.id, Decision.CANCEL, "stop"))
    timer.start()
    start = time.monotonic()
    done = engine.run(ex.id)
    timer.join()
    assert done.status is ExecutionStatus.CANCELLED
    assert time.monotonic() - start < 4


def test_gate_failure_blocks_the_checkpoint_until_fixed(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    ws = tmp_path / "gated"
    (ws / "tests").mkdir(parents=True)
    test_file = ws / "tests" / "test_it.py"
    test_file.write_text(
        "import unittest\n\nclass T(unittest.TestCase):\n"
        "    def test_it(self):\n        self.assertEqual(1, 2)\n"
    )
    ex = submit_graph(
        {
            "name": "gated",
            "tasks": [{"id": "work", "agent": "noop"}],
            "checkpoints": [{"after": ["work"], "question": "ok?", "gates": ["tests-pass"]}],
        },
        workspace=ws,
    )
    blocked = engine.run(ex.id)
    # The stage went back to its agent with the remediation twice (gates.remediation_rounds),
    # then stopped for a person.
    assert blocked.status is ExecutionStatus.GATE_FAILED
    assert blocked.error == "quality gate failed: tests-pass (after 2 remediation rounds)"
    assert (blocked.round, blocked.remediations) == (2, 2)
    gate = engine.view(ex.id).gate
    assert gate is not None and not gate.passed and gate.rules[0].remediation
    with pytest.raises(InvalidState):
        engine.decide(ex.id, Decision.APPROVE)
    test_file.write_text(test_file.read_text().replace("1, 2", "2, 2"))
    resumed = engine.run(ex.id)
    assert resumed.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert resumed.remediations == 0
    assert len(engine.store.task_attempts(ex.id, "work")) == 3  # one per round


def test_every_state_change_is_an_event(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph({"name": "ev", "tasks": [{"id": "n", "agent": "notes"}]})
    engine.run(ex.id)
    assert kinds(engine, ex.id) == [
        "execution.created",
        "execution.running",
        "stage.started",
        "task.started",
        "task.succeeded",
        "execution.completed",
    ]
    seqs = [e.seq for e in engine.store.events(ex.id)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_live_owner_keeps_the_execution(engine: Engine, submit_graph: Submit) -> None:
    import subprocess
    import sys

    from connectsw.core.models import utcnow

    ex = submit_graph({"name": "owned", "tasks": [{"id": "a", "agent": "noop"}]})
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket

        owner = f"{socket.gethostname()}:{holder.pid}"
        token = engine.store.claim(ex.id, owner, 0, utcnow())
        assert token == 1
        execution = engine.get(ex.id)
        execution.status = ExecutionStatus.EXECUTING
        engine.store.transition(execution, {ExecutionStatus.PENDING}, token=token)
        # HeldElsewhere: a read-only status shows the state instead (issue 5, kind 3/11).
        with pytest.raises(HeldElsewhere, match="being run by"):
            engine.run(ex.id)
        assert engine.status(engine.get(ex.id)) is ExecutionStatus.EXECUTING
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone: the execution shows as interrupted and can be taken over.
    assert engine.status(engine.get(ex.id)) is ExecutionStatus.INTERRUPTED
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    assert "execution.resumed" in kinds(engine, ex.id)


def test_runs_on_an_existing_scheduler(settings: Settings, submit_graph: Submit) -> None:
    import dask

    # A scheduler that never re-runs a task by itself (the engine refuses others).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp://",
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        ) as cluster,
    ):
        remote = settings.model_copy(
            update={
                "dask": settings.dask.model_copy(
                    update={"scheduler_address": cluster.scheduler_address}
                )
            }
        )
        ex = submit_graph({"name": "remote", "tasks": [{"id": "n", "agent": "notes"}]})
        with Engine(remote) as engine:
            done = engine.run(ex.id)
            assert engine.client.scheduler.address == cluster.scheduler_address
        assert done.status is ExecutionStatus.COMPLETED


def test_the_lease_is_held_through_slow_gates(
    engine: Engine, submit_graph: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.core.models import RuleResult
    from connectsw.gates.base import GateContext, GateRule

    beats: list[object] = []

    class SlowRule(GateRule):
        name = "slow-rule"
        isolation = "thread"  # reads the engine's store, which only this process may use

        def evaluate(self, ctx: GateContext) -> RuleResult:
            for _ in range(2):
                beats.append(engine.store.get_execution(ctx.execution.id).heartbeat_at)  # type: ignore[union-attr]
                time.sleep(0.6)  # three heartbeat intervals of the test settings
            return RuleResult(rule=self.name, passed=True)

    engine.registries.gates.add(SlowRule(), "test")
    ex = submit_graph(
        {"name": "slow-gate", "tasks": [{"id": "a", "agent": "noop"}], "gates": ["slow-rule"]}
    )
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    assert beats[0] is not None and beats[1] is not None
    assert beats[1] > beats[0]  # type: ignore[operator]


def _hanging_rule(tmp_path: Path, timeout: float | None = None) -> object:
    """A plugin gate rule that blocks for 60 s, writing ``started`` then ``marker`` after."""
    from connectsw.core.models import RuleResult
    from connectsw.gates.base import GateContext, GateRule

    class HangRule(GateRule):
        name = "hang"

        def evaluate(self, ctx: GateContext) -> RuleResult:
            (tmp_path / "started").write_text("x")
            time.sleep(60)
            (tmp_path / "marker").write_text("the rule ran on")
            return self.passed("slept")

    HangRule.timeout = timeout
    return HangRule()


def _hang_graph() -> dict[str, object]:
    return {
        "name": "hang",
        "tasks": [{"id": "a", "agent": "noop"}],
        "checkpoints": [{"after": ["a"], "question": "ok?", "gates": ["hang"]}],
    }


def test_cancel_stops_a_plugin_gate_rule_that_blocks(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    """Trial 7, F10: cancel waited ~40 s for a sleeping plugin rule, then returned while the
    rule and run went on. The rule runs forked under a keeper: cancel ends it at once."""
    engine.registries.gates.add(_hanging_rule(tmp_path), "t7-plugin")
    ex = submit_graph(_hang_graph())
    took: list[float] = []

    def cancel() -> None:
        end = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < end:
            time.sleep(0.05)
        start = time.monotonic()
        engine.cancel(ex.id, "stop")
        took.append(time.monotonic() - start)

    thread = threading.Thread(target=cancel)
    thread.start()
    start = time.monotonic()
    done = engine.run(ex.id)
    ran = time.monotonic() - start
    thread.join(60)
    assert (tmp_path / "started").exists()
    assert done.status is ExecutionStatus.CANCELLED
    assert took and took[0] < 10, took
    assert ran < 20, ran
    assert "gate.stopped" in kinds(engine, ex.id)
    time.sleep(1.0)
    assert not (tmp_path / "marker").exists()  # the rule's process was ended, not left


def test_a_plugin_gate_rule_past_its_timeout_is_ended_and_fails(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    engine.registries.gates.add(_hanging_rule(tmp_path, timeout=1.0), "t7-plugin")
    ex = submit_graph(_hang_graph())
    start = time.monotonic()
    done = engine.run(ex.id)
    assert time.monotonic() - start < 30
    assert done.status is ExecutionStatus.GATE_FAILED
    gate = engine.view(ex.id).gate
    assert gate is not None and not gate.passed
    assert gate.rules[0].details == "rule timed out after 1s", gate.rules[0].details
    time.sleep(1.0)
    assert not (tmp_path / "marker").exists()


def test_engine_default_retries_apply_to_tasks_that_set_none(
    engine: Engine, submit_graph: Submit
) -> None:
    settings = engine.settings
    engine.settings = settings.model_copy(
        update={"engine": settings.engine.model_copy(update={"default_retries": 2})}
    )
    ex = submit_graph(
        {
            "name": "dr",
            "tasks": [
                {"id": "a", "agent": "flaky", "with": {"succeed_on": 3}},
                {"id": "b", "agent": "flaky", "retries": 0, "with": {"succeed_on": 2}},
            ],
        }
    )
    engine.run(ex.id)
    a = [(r.attempt, r.status) for r in engine.store.task_attempts(ex.id, "a")]
    b = [(r.attempt, r.status) for r in engine.store.task_attempts(ex.id, "b")]
    assert a == [(1, TaskStatus.FAILED), (2, TaskStatus.FAILED), (3, TaskStatus.SUCCEEDED)]
    assert b == [(1, TaskStatus.FAILED)]  # its own retries: 0 wins


# -- the remediation loop: a failed gate sends the stage back to its agents ------------------


# The agent: a broken service, until the gate's feedback names server-start; it keeps
# the feedback it got beside the service.
FIXING_AGENT = (
    'printf "%s" "$CONNECTSW_FEEDBACK" > feedback.txt; '
    'if grep -q "server-start" feedback.txt; then cp good.py server.py; '
    "else echo 'raise SystemExit(\"no port configured\")' > server.py; fi"
)


def _service_graph(command: str) -> dict[str, object]:
    return {
        "name": "service",
        "tasks": [
            {
                "id": "make",
                "agent": "shell",
                "with": {"command": command, "outputs": ["server.py", "feedback.txt"]},
            }
        ],
        "checkpoints": [{"after": ["make"], "name": "service_ready", "question": "ok?"}],
    }


def _gated(engine: Engine, rounds: int) -> None:
    """The service_ready checkpoint runs server-start (a rule set from the settings)."""
    gates = type(engine.settings.gates).model_validate(
        {
            **engine.settings.gates.model_dump(),
            "server_command": "python server.py {port}",
            "server_timeout": 5.0,
            "remediation_rounds": rounds,
            "rule_sets": {"service_ready": {"rules": ["server-start"]}},
        }
    )
    engine.settings = engine.settings.model_copy(update={"gates": gates})


def test_a_failed_gate_sends_the_stage_back_with_the_remediation(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    _gated(engine, rounds=2)
    ws = tmp_path / "fixes"
    ws.mkdir()
    (ws / "good.py").write_text(OK_SERVER)
    ex = submit_graph(_service_graph(FIXING_AGENT), workspace=ws)
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.AWAITING_CHECKPOINT
    assert (done.round, done.remediations) == (1, 0)
    # Round 0 failed the gate; its remediation and evidence reached the agent in round 1.
    failed = engine.store.gate_result(ex.id, 0, 0)
    assert failed is not None and not failed.passed
    assert "no port configured" in failed.rules[0].details
    feedback = (ws / "feedback.txt").read_text()
    assert feedback.startswith("Quality gate failed (automatic remediation 1 of 2):")
    assert "- server-start: Make the service start and answer its health URL" in feedback
    assert "no port configured" in feedback
    passed = engine.view(ex.id).gate
    assert passed is not None and passed.passed and "HTTP 200" in passed.rules[0].details
    gate_events = [e for e in engine.store.events(ex.id) if e.kind.startswith("gate.")]
    assert [e.kind for e in gate_events] == ["gate.failed", "gate.passed"]
    assert gate_events[0].data["remediation"] == 1
    assert len(engine.store.task_attempts(ex.id, "make")) == 2


def test_after_the_remediation_rounds_a_person_decides_with_the_evidence(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    _gated(engine, rounds=1)
    ws = tmp_path / "never"
    ws.mkdir()
    never = "echo 'raise SystemExit(\"still broken\")' > server.py; : > feedback.txt"
    ex = submit_graph(_service_graph(never), workspace=ws)
    stopped = engine.run(ex.id)
    assert stopped.status is ExecutionStatus.GATE_FAILED
    assert stopped.error == "quality gate failed: server-start (after 1 remediation round)"
    assert (stopped.round, stopped.remediations) == (1, 1)
    view = engine.view(ex.id)
    assert view.gate is not None and "still broken" in view.gate.rules[0].details
    assert "Make the service start" in view.gate.remediation
    # The person asks for a change: the stage runs again with their feedback, and a new
    # failure gets its remediation rounds again.
    engine.decide(ex.id, Decision.REQUEST_CHANGES, "use good.py")
    assert engine.get(ex.id).remediations == 0
    again = engine.run(ex.id)
    assert again.status is ExecutionStatus.GATE_FAILED
    assert (again.round, again.remediations) == (3, 1)
    assert len(engine.store.task_attempts(ex.id, "make")) == 4


def test_a_rule_that_is_not_installed_goes_to_a_person_without_remediation_rounds(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    _gated(engine, rounds=2)
    gates = type(engine.settings.gates).model_validate(
        {
            **engine.settings.gates.model_dump(),
            "rule_sets": {"service_ready": {"rules": ["no-such-rule"]}},
        }
    )
    engine.settings = engine.settings.model_copy(update={"gates": gates})
    ws = tmp_path / "missing"
    ws.mkdir()
    ex = submit_graph(_service_graph(": > server.py; : > feedback.txt"), workspace=ws)
    stopped = engine.run(ex.id)
    assert stopped.status is ExecutionStatus.GATE_FAILED
    assert (stopped.round, stopped.remediations) == (0, 0)
    assert stopped.error is not None and "no-such-rule" in stopped.error
    assert "remediation rounds cannot fix" in stopped.error, stopped.error
    assert len(engine.store.task_attempts(ex.id, "make")) == 1
    view = engine.view(ex.id)
    assert view.gate is not None and "not installed" in view.gate.rules[0].details
