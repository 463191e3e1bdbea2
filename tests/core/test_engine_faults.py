"""The engine's promises under the faults of issue 5, on both stores.

Timeouts and cancel stop the work (fault 1); two decisions at once (fault 3); a
result JSON cannot represent fails only its task (fault 4); never-started tasks
of a cancelled execution are ``cancelled`` (fault 11). Worker deaths and an
owner stopped past its lease (fault 2) are in ``test_worker_death.py`` and the
chaos trials (``test_chaos.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectsw.conf.settings import Settings
from connectsw.core.engine import Engine
from connectsw.core.errors import InvalidState
from connectsw.core.models import Decision, Execution, ExecutionStatus, TaskStatus

Submit = Callable[..., Execution]


# Every engine test runs on the embedded store and on a real PostgreSQL.
pytestmark = pytest.mark.both_stores


def attempts(engine: Engine, execution_id: str, task_id: str) -> list[tuple[int, TaskStatus]]:
    return [(a.attempt, a.status) for a in engine.store.task_attempts(execution_id, task_id)]


def test_a_blocking_agent_is_stopped_at_its_timeout_and_attempts_never_overlap(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ex = submit_graph(
        {
            "name": "blocker",
            "tasks": [
                {
                    "id": "b",
                    "agent": "blocker",
                    "timeout": 0.5,
                    "retries": 1,
                    "with": {"seconds": 2},
                }
            ],
        },
        workspace=ws,
    )
    start = time.monotonic()
    done = engine.run(ex.id)
    assert time.monotonic() - start < 4
    assert done.status is ExecutionStatus.FAILED
    assert "timed out after 0.5s" in (done.error or "")
    assert attempts(engine, ex.id, "b") == [(1, TaskStatus.FAILED), (2, TaskStatus.FAILED)]
    time.sleep(2.5)  # past the agent's own sleep: it must be gone, not finishing late
    assert not (ws / "late.txt").exists()
    lines = [line.split() for line in (ws / "blocker.log").read_text().splitlines()]
    assert [(n, what) for n, what, _ in lines] == [("1", "start"), ("2", "start")]
    assert float(lines[1][2]) - float(lines[0][2]) >= 0.5  # attempt 2 began after 1 ended


def test_cancel_stops_a_running_command_and_records_cancelled(
    engine: Engine,
    submit_graph: Submit,
    tmp_path: Path,
    settings: Settings,
    wait_for: Callable[..., None],
) -> None:
    ws = tmp_path / "ws"
    ex = submit_graph(
        {
            "name": "cancel-cmd",
            "tasks": [
                {"id": "long", "agent": "shell", "with": {"command": "sleep 5; date > after.txt"}},
                {"id": "later", "agent": "noop", "needs": ["long"]},
            ],
        },
        workspace=ws,
    )
    outcome: dict[str, Execution] = {}
    runner = threading.Thread(target=lambda: outcome.update(done=engine.run(ex.id)))
    runner.start()
    wait_for(lambda: engine.task_states(engine.get(ex.id))["long"] is TaskStatus.RUNNING)
    other = Engine(settings)  # another process's view: its own store connection
    start = time.monotonic()
    cancelled = other.cancel(ex.id, "not needed", wait=True)
    took = time.monotonic() - start
    runner.join(timeout=20)
    other.store.close()
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert took < 4.5  # returned once the command stopped, not when it ended
    assert outcome["done"].status is ExecutionStatus.CANCELLED
    assert attempts(engine, ex.id, "long") == [(1, TaskStatus.CANCELLED)]
    assert attempts(engine, ex.id, "later") == [(1, TaskStatus.CANCELLED)]
    time.sleep(max(0.0, 5.3 - took))
    assert not (ws / "after.txt").exists()


def test_cancel_at_a_checkpoint_records_never_started_tasks_cancelled(
    engine: Engine, submit_graph: Submit
) -> None:
    ex = submit_graph(
        {
            "name": "cp-cancel",
            "tasks": [{"id": "a", "agent": "noop"}, {"id": "b", "agent": "noop", "needs": ["a"]}],
            "checkpoints": [{"after": ["a"], "question": "go?"}],
        }
    )
    engine.run(ex.id)
    engine.cancel(ex.id, "no")
    states = engine.task_states(engine.get(ex.id))
    assert states == {"a": TaskStatus.SUCCEEDED, "b": TaskStatus.CANCELLED}
    assert attempts(engine, ex.id, "b") == [(1, TaskStatus.CANCELLED)]
    cp = engine.current_checkpoint(engine.get(ex.id))
    assert cp is not None and cp.decision is Decision.CANCEL


@pytest.mark.parametrize("loser", [Decision.APPROVE, Decision.REQUEST_CHANGES])
def test_two_decisions_at_once_one_wins_the_other_is_refused(
    engine: Engine, submit_graph: Submit, settings: Settings, loser: Decision
) -> None:
    outcomes: list[str] = []
    for _ in range(6):
        ex = submit_graph(
            {
                "name": "race",
                "tasks": [
                    {"id": "a", "agent": "noop"},
                    {"id": "b", "agent": "noop", "needs": ["a"]},
                ],
                "checkpoints": [{"after": ["a"], "question": "go?"}],
            }
        )
        assert engine.run(ex.id).status is ExecutionStatus.AWAITING_CHECKPOINT
        engines = [Engine(settings), Engine(settings)]
        barrier = threading.Barrier(2)
        results: list[str] = []

        def decide(
            eng: Engine,
            decision: Decision,
            barrier: threading.Barrier = barrier,
            execution_id: str = ex.id,
            results: list[str] = results,
        ) -> None:
            barrier.wait()
            try:
                eng.decide(execution_id, decision, "change it")
                results.append(decision.value)
            except InvalidState as exc:
                results.append(f"conflict: {exc}")

        threads = [
            threading.Thread(target=decide, args=(engines[0], Decision.APPROVE)),
            threading.Thread(target=decide, args=(engines[1], Decision.REQUEST_CHANGES)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for eng in engines:
            eng.store.close()
        wins = [r for r in results if not r.startswith("conflict")]
        assert len(wins) == 1, results
        assert any("already decided" in r for r in results), results
        cp = engine.store.checkpoints(ex.id)[0]
        assert cp.decision is not None and cp.decision.value == wins[0]
        outcomes.append(wins[0])
        decided = [e for e in engine.store.events(ex.id) if e.kind == "checkpoint.decided"]
        assert len(decided) == 1
    assert loser.value in outcomes or len(set(outcomes)) == 1


@pytest.mark.parametrize("agent", ["bad-result", "bad-result-thread"])
def test_a_result_json_cannot_represent_fails_only_its_task(
    engine: Engine, submit_graph: Submit, agent: str
) -> None:
    ex = submit_graph(
        {
            "name": "bad",
            "tasks": [
                {"id": "good", "agent": "notes"},
                {"id": "bad", "agent": agent},
                {"id": "after", "agent": "noop", "needs": ["bad"]},
            ],
        }
    )
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    assert "not valid JSON" in (done.error or "")
    states = engine.task_states(engine.get(ex.id))
    assert states["good"] is TaskStatus.SUCCEEDED
    assert states["bad"] is TaskStatus.FAILED
    assert states["after"] is TaskStatus.SKIPPED
    # Nothing is poisoned: views work and a resume fails the same task the same way.
    assert engine.view(ex.id).status is ExecutionStatus.FAILED
    again = engine.run(ex.id)
    assert again.status is ExecutionStatus.FAILED
    assert attempts(engine, ex.id, "good") == [(1, TaskStatus.SUCCEEDED)]
    assert [a for a, _ in attempts(engine, ex.id, "bad")] == [1, 2]


@pytest.mark.parametrize("agent", ["non-finite", "non-finite-thread"])
def test_nan_or_infinity_in_a_result_fails_its_task(
    engine: Engine, submit_graph: Submit, agent: str
) -> None:
    """Trial 5, item 8: NaN and Infinity in outputs were stored as null, the task
    succeeded."""
    ex = submit_graph({"name": "nan", "tasks": [{"id": "bad", "agent": agent, "retries": 0}]})
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    assert engine.task_states(engine.get(ex.id))["bad"] is TaskStatus.FAILED
    [attempt] = engine.store.task_attempts(ex.id, "bad")
    assert attempt.error == (
        "agent result holds nan at outputs.x, which JSON cannot represent"
        " (NaN and infinities are not JSON numbers)"
    )


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("surrogate-error", "bad \ufffd thing"),
        ("surrogate-error-thread", "bad \ufffd thing"),
        ("surrogate-crash", "ValueError: crash \ufffd here"),
        ("surrogate-crash-thread", "ValueError: crash \ufffd here"),
    ],
)
def test_an_error_text_with_a_lone_surrogate_is_recorded_as_given(
    engine: Engine, submit_graph: Submit, agent: str, expected: str
) -> None:
    """Trial 5, item 11: ``TaskError("bad \\udcff thing")`` was reported as "its Dask
    worker died". The text is stored with the surrogate replaced."""
    ex = submit_graph({"name": "sur", "tasks": [{"id": "bad", "agent": agent, "retries": 0}]})
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    [attempt] = engine.store.task_attempts(ex.id, "bad")
    assert attempt.status is TaskStatus.FAILED
    assert attempt.error is not None and expected in attempt.error, attempt.error
    assert "worker died" not in (done.error or "") and expected in (done.error or "")


@pytest.mark.parametrize("agent", ["exits-thread", "exits"])
def test_an_agent_that_calls_sys_exit_fails_its_task_only(
    engine: Engine, submit_graph: Submit, agent: str
) -> None:
    """Trial 7, F5: ``sys.exit`` in a thread agent's ``run`` took its Dask worker down
    ("its worker died", a Dask traceback); it is that task's failure, as in a process."""
    ex = submit_graph(
        {
            "name": "exits",
            "tasks": [
                {"id": "bad", "agent": agent, "retries": 0},
                {"id": "other", "agent": "noop"},
            ],
        }
    )
    done = engine.run(ex.id)
    assert done.status is ExecutionStatus.FAILED
    [attempt] = engine.store.task_attempts(ex.id, "bad")
    assert attempt.status is TaskStatus.FAILED
    assert attempt.error is not None and "raised SystemExit: 0 (" in attempt.error, attempt.error
    assert engine.task_states(engine.get(ex.id))["other"] is TaskStatus.SUCCEEDED


def test_finished_executions_refuse_decisions(engine: Engine, submit_graph: Submit) -> None:
    ex = submit_graph({"name": "fin", "tasks": [{"id": "a", "agent": "noop"}]})
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    with pytest.raises(InvalidState, match="already completed"):
        engine.cancel(ex.id)
    with pytest.raises(InvalidState, match="already completed"):
        engine.decide(ex.id, Decision.APPROVE)


def test_nul_bytes_in_output_and_output_files_are_kept_as_text(
    engine: Engine, submit_graph: Submit, tmp_path: Path
) -> None:
    ex = submit_graph(
        {
            "name": "nul",
            "tasks": [
                {
                    "id": "nul",
                    "agent": "shell",
                    "with": {
                        "command": "printf 'a\\000b\\n'; printf 'PK\\003\\004\\000\\000' > a.zip",
                        "outputs": ["a.zip"],
                    },
                },
                {"id": "after", "agent": "noop", "needs": ["nul"]},
            ],
        },
        workspace=tmp_path / "ws",
    )
    assert engine.run(ex.id).status is ExecutionStatus.COMPLETED
    nul = engine.store.task_attempts(ex.id, "nul")
    assert [(a.attempt, a.status) for a in nul] == [(1, TaskStatus.SUCCEEDED)]
    assert "a\ufffdb" in nul[0].outputs["output"]
