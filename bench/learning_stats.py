"""The learning inputs of one new plan, at 0, 2,000 and 20,000 past executions, beside a
plain SQL aggregate over a table of the same rows in the same run.

What is timed, in ms per plan (median of ``--repeat``):

- ``learn_plan``: what ``connectsw new ...`` and ``POST /v1/execute`` pay for the
  history (:func:`connectsw.core.learning.learn_plan`: the workflow's task
  statistics for estimates and extra retries, and the project's preferences; no
  memory exists here, so preferences open no database);
- ``insights``: ``connectsw insights --workflow W`` (every statistic of the workflow);
- the baseline: ``SELECT task_id, agent, COUNT(*), AVG(seconds) ... WHERE workflow = ?
  GROUP BY task_id, agent`` over ``bench_attempts``, a plain table with one row per
  attempt of the history (the same count) and no index: what any aggregate over that
  many rows costs on the backend. ``learn_plan`` is printed as a ratio of it.

The history is one workflow (the worst case: every past execution is the plan's own
workflow), 5 tasks per execution, one in four of the "flaky" task's runs failing once
then succeeding, written through the store's own API (``create_execution``,
``save_task_results``) so that the rows are what the engine writes. SQLite always;
PostgreSQL too when ``CONNECTSW_TEST_POSTGRES_URL`` is set (``scripts/postgres start
DIR`` prints one), on a schema of its own dropped at the end. The load average is
printed: the machine is shared. Usage::

    .venv/bin/python bench/learning_stats.py [--sizes 0,2000,20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectsw.conf.settings import Settings, load_settings
from connectsw.core.learning import insights, learn_plan
from connectsw.core.models import (
    Execution,
    ExecutionStatus,
    Plan,
    Request,
    Stage,
    TaskResult,
    TaskSpec,
    TaskStatus,
)
from connectsw.core.stores import Store, open_store

WORKFLOW = "bench-flow"
TASKS = (("spec", "writer"), ("design", "architect"), ("build", "coder"), ("flaky", "coder"))
TASKS += (("review", "reviewer"),)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HEADS = ("learn ms", "insights", "base ms")


def plan() -> Plan:
    """Five tasks in two stages, as a small workflow plans them."""
    specs = [TaskSpec(id=t, agent=a, stage=0 if i < 3 else 1) for i, (t, a) in enumerate(TASKS)]
    specs[1].needs, specs[2].needs, specs[4].needs = ["spec"], ["design"], ["flaky"]
    return Plan(
        name="bench",
        workflow=WORKFLOW,
        tasks=specs,
        stages=[
            Stage(index=0, name="make", task_ids=["spec", "design", "build"]),
            Stage(index=1, name="check", task_ids=["flaky", "review"]),
        ],
    )


def attempts(ex: Execution, rng: random.Random) -> list[TaskResult]:
    """One execution's attempts: each task succeeds, "flaky" fails first in 1 of 4 runs."""
    out = []
    for task, _ in TASKS:
        tries = 2 if task == "flaky" and rng.random() < 0.25 else 1
        for n in range(1, tries + 1):
            seconds = rng.uniform(1, 120)
            out.append(
                TaskResult(
                    execution_id=ex.id,
                    task_id=task,
                    attempt=n,
                    status=TaskStatus.FAILED if n < tries else TaskStatus.SUCCEEDED,
                    started_at=T0,
                    finished_at=T0 + timedelta(seconds=seconds),
                )
            )
    return out


class History:
    """A store being filled with past executions, and the baseline table beside it."""

    def __init__(self, store: Store, db: Any, param: str) -> None:
        """``db``: a connection of its own (autocommit) to the store's database."""
        self.store, self.db, self.param = store, db, param
        self.executions = 0
        self.rng = random.Random(8)
        db.execute(
            "CREATE TABLE bench_attempts (workflow TEXT, task_id TEXT, agent TEXT,"
            " status TEXT, seconds DOUBLE PRECISION)"
        )

    def grow(self, to: int) -> float:
        """Add executions up to ``to``; returns the seconds it took."""
        start = time.perf_counter()
        agents = dict(TASKS)
        rows = []
        while self.executions < to:
            ex = Execution(request=Request(command="run", args=["b"]), plan=plan(), workspace="/w")
            ex.status = ExecutionStatus.COMPLETED
            self.store.create_execution(ex)
            results = attempts(ex, self.rng)
            self.store.save_task_results(results)
            rows += [
                (
                    WORKFLOW,
                    r.task_id,
                    agents[r.task_id],
                    r.status.value,
                    (r.finished_at - r.started_at).total_seconds(),  # type: ignore[operator]
                )
                for r in results
            ]
            self.executions += 1
        p = self.param
        self.db.cursor().executemany(
            f"INSERT INTO bench_attempts VALUES ({p}, {p}, {p}, {p}, {p})", rows
        )
        return time.perf_counter() - start

    def baseline(self) -> None:
        self.db.execute(
            "SELECT task_id, agent, COUNT(*), AVG(seconds) FROM bench_attempts"
            f" WHERE workflow = {self.param} AND status IN ('succeeded', 'failed')"
            " GROUP BY task_id, agent",
            (WORKFLOW,),
        ).fetchall()


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(history: History, settings: Settings, repeat: int) -> tuple[float, float, float]:
    """(learn_plan, insights, baseline) ms, alternating which runs first."""
    new = Execution(request=Request(command="run", args=["b"]), plan=plan(), workspace="/w")
    learned = learn_plan(new, history.store, settings)  # warm: caches, statements
    assert learned.tasks[0].learned is not None
    if history.executions >= settings.learning.min_runs:
        assert learned.tasks[0].learned.basis == "history", "the history was not read"
    lp, ins, base = [], [], []
    for i in range(repeat):
        steps = [
            (lp, lambda: learn_plan(new, history.store, settings)),
            (ins, lambda: insights(history.store, settings, WORKFLOW)),
            (base, history.baseline),
        ]
        for out, call in steps if i % 2 else steps[::-1]:
            out.append(median_ms(call, 1))
    return statistics.median(lp), statistics.median(ins), statistics.median(base)


@contextmanager
def sqlite_store(folder: Path) -> Iterator[History]:
    import sqlite3

    path = folder / "bench.db"
    store = open_store(f"sqlite:///{path}")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield History(store, db, "?")
    finally:
        db.close()
        store.close()


@contextmanager
def postgres_store(server: str) -> Iterator[History]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    url = f"{server}?options=-csearch_path%3D{schema}"
    store = open_store(url)
    db = psycopg.connect(url, autocommit=True)
    try:
        yield History(store, db, "%s")
    finally:
        db.close()
        store.close()
        with psycopg.connect(server, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


def run(name: str, history: History, settings: Settings, sizes: list[int], repeat: int) -> None:
    for size in sizes:
        filled = history.grow(size)
        lp, ins, base = measure(history, settings, repeat)
        print(
            f"{name:10} {size:>7,} {lp:10.1f} {ins:10.1f} {base:10.1f} {lp / base:8.1f}x"
            f"   (history written in {filled:.0f} s; load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,2000,20000", help="past executions, ascending")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--window", type=int, help="learning.window (default: the setting's)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CONNECTSW_DATA_DIR"] = str(Path(folder) / "data")
        settings = load_settings()
        if args.window is not None:  # an older connectsw has no learning.window
            learning = settings.learning.model_copy(update={"window": args.window})
            settings = settings.model_copy(update={"learning": learning})
        print(f"learning.window: {getattr(settings.learning, 'window', 'none (all history)')}")
        print(f"{'backend':10} {'history':>7}", *(f"{c:>10}" for c in HEADS), "ratio")
        with sqlite_store(Path(folder)) as history:
            run("SQLite", history, settings, sizes, args.repeat)
        server = os.environ.get("CONNECTSW_TEST_POSTGRES_URL", "")
        if server:
            with postgres_store(server) as history:
                run("PostgreSQL", history, settings, sizes, args.repeat)
        else:
            print("PostgreSQL: not run (set CONNECTSW_TEST_POSTGRES_URL)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
