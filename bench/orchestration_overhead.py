"""Orchestration overhead: N no-op tasks through the engine vs. the same plain Dask graph.

Every measurement (plain or engine) starts a fresh LocalCluster and warms it up
both ways: a scheduler that already ran a large graph runs the next one slower, so
sharing one between the two would charge whichever ran second. Repetitions
alternate which runs first (this shared machine is noisy): the ratio of the
medians is what is comparable. Usage:

    python bench/orchestration_overhead.py [--n 1000 --n 10000] [--repeat 3] [--store URL]

``--store`` runs the engine on another store (e.g. ``postgresql://...``; each
repetition then writes to it, so give it an empty schema or database).

The engine's time covers ``Engine.run``: building the stage graph, running every
task through the runner (which persists a result and two events per task to
SQLite by default), and reading the results back. Planning (``submit``) is reported apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

from connectsw.conf.settings import load_settings
from connectsw.core.cluster import quiet_dask_logs
from connectsw.core.engine import Engine
from connectsw.core.models import ExecutionStatus, Request
from connectsw.core.stores import redact

WIDTH = 10  # independent chains: task i needs task i - WIDTH


def noop(*args: object) -> None:
    """The baseline's task."""
    return None


def plain_graph(n: int) -> dict[tuple[str, int], tuple[object, ...]]:
    """The same dependency structure as a raw Dask task dict.

    Keys are ``("noop", i)``, as Dask's own collections name theirs: one key prefix
    for all tasks (as the engine's keys have), not one per task.
    """
    return {("noop", i): (noop, *([("noop", i - WIDTH)] if i >= WIDTH else [])) for i in range(n)}


def graph_file(n: int, folder: Path) -> Path:
    """A task-graph file of ``n`` noop tasks with the same structure."""
    tasks = [
        {"id": f"t{i}", "agent": "noop", **({"needs": [f"t{i - WIDTH}"]} if i >= WIDTH else {})}
        for i in range(n)
    ]
    path = folder / f"noop-{n}.json"
    path.write_text(json.dumps({"name": f"noop-{n}", "tasks": tasks}))
    return path


def run_plain(client: Client, n: int) -> float:
    dsk = plain_graph(n)
    start = time.perf_counter()
    client.get(dsk, list(dsk))
    return time.perf_counter() - start


def run_engine(engine: Engine, n: int, folder: Path) -> tuple[float, float]:
    request = Request(command="run", args=[str(graph_file(n, folder))])
    start = time.perf_counter()
    execution = engine.submit(request, folder / "ws")
    planned = time.perf_counter() - start
    start = time.perf_counter()
    done = engine.run(execution.id)
    elapsed = time.perf_counter() - start
    if done.status is not ExecutionStatus.COMPLETED:
        raise SystemExit(f"engine run ended {done.status.value}: {done.error}")
    return elapsed, planned


def measure(n: int, args: argparse.Namespace, folder: Path, engine: bool) -> tuple[float, float]:
    """One timed run of ``n`` tasks on a fresh, warmed-up cluster: (seconds, planning seconds).

    Each measurement gets a cluster of its own: a scheduler that already ran a large
    graph runs the next one slower, so whichever ran second would pay for the first.
    """
    settings = load_settings(data_dir=folder / "data", store={"url": args.store})
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # shutdown chatter, not results
            # As the engine's own cluster (core/cluster.py): Dask never re-runs a task.
            scheduler_kwargs={
                "dashboard": False,
                "dashboard_address": "127.0.0.1:0",
                "allowed_failures": 0,
            },
        ) as cluster,
        Client(cluster) as client,
    ):
        eng = Engine(settings, client=client)
        run_plain(client, 200)  # warm up workers and imports, both ways
        run_engine(eng, 200, folder)
        if engine:
            return run_engine(eng, n, folder)
        return run_plain(client, n), 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="task counts (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default="", help="store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    sizes = args.n or [1000, 10000]
    quiet_dask_logs()
    print(
        f"cluster: {args.workers} worker processes x {args.threads} thread(s), "
        f"fresh per repetition; {args.repeat} repetitions; "
        f"store: {redact(args.store) or 'SQLite'}"
    )
    print(
        f"{'tasks':>7} {'dask s':>8} {'engine s':>9} {'ratio':>6} "
        f"{'dask ms/task':>13} {'engine ms/task':>15} {'plan s':>7}  per-pair ratios"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            plain, ours, plans = [], [], []
            for i in range(args.repeat):
                first_engine = bool(i % 2)  # alternate which runs first
                for engine in (first_engine, not first_engine):
                    seconds, planned = measure(n, args, folder, engine)
                    if engine:
                        ours.append(seconds)
                        plans.append(planned)
                    else:
                        plain.append(seconds)
            p, o = statistics.median(plain), statistics.median(ours)
            pairs = " ".join(f"{b / a:.2f}" for a, b in zip(plain, ours, strict=True))
            print(
                f"{n:>7} {p:>8.2f} {o:>9.2f} {o / p:>6.3f} {1000 * p / n:>13.3f} "
                f"{1000 * o / n:>15.3f} {statistics.median(plans):>7.2f}  {pairs}",
                flush=True,
            )


if __name__ == "__main__":
    main()
