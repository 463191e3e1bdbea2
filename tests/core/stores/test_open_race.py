"""Fault 9: many processes opening a fresh store at the same instant all succeed.

Eight real processes are started once; for each of ten fresh stores they wait at a
barrier (a file appearing), then all open the store and write to it at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PROCESSES = 8
ROUNDS = 10

CHILD = r"""
import json, os, sys, time
from connectsw.core.models import Execution, Plan, Request
from connectsw.core.stores import open_store

barrier, index, urls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for r, url in enumerate(urls):
    open(os.path.join(barrier, f"ready-{r}-{index}"), "w").close()
    go = os.path.join(barrier, f"go-{r}")
    while not os.path.exists(go):
        time.sleep(0.0002)
    try:
        store = open_store(url)
        plan = Plan(name="p", workflow="w", tasks=[], stages=[])
        store.create_execution(Execution(request=Request(command="run"), plan=plan, workspace="/w"))
        store.close()
        print(json.dumps({"round": r, "ok": True}), flush=True)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"round": r, "ok": False, "error": error}), flush=True)
"""


def race(urls: list[str], barrier: Path) -> list[dict[str, object]]:
    """Run the children over ``urls``; returns one report per (process, round)."""
    barrier.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(barrier), str(i), json.dumps(urls)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        for r in range(len(urls)):
            deadline = time.monotonic() + 60
            while len(list(barrier.glob(f"ready-{r}-*"))) < PROCESSES:
                assert time.monotonic() < deadline, "children did not reach the barrier"
                time.sleep(0.001)
            (barrier / f"go-{r}").touch()
        reports = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            reports += [json.loads(line) for line in out.splitlines()]
    finally:
        for child in children:
            child.kill()
            child.wait()
    return reports


def test_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'data{r}' / 'connectsw.db'}" for r in range(ROUNDS)]
    reports = race(urls, tmp_path / "barrier")
    assert [r for r in reports if not r["ok"]] == []
    assert len(reports) == PROCESSES * ROUNDS
    from connectsw.core.stores import open_store

    for url in urls:
        store = open_store(url)
        assert len(store.list_executions(limit=100)) == PROCESSES
        store.close()


@pytest.fixture
def fresh_schemas(postgres_server: str) -> Iterator[list[str]]:
    """ROUNDS store URLs, each on an empty schema of its own."""
    schemas = [f"race_{uuid.uuid4().hex[:12]}" for _ in range(ROUNDS)]
    with psycopg.connect(postgres_server, autocommit=True) as db:
        for schema in schemas:
            db.execute(f"CREATE SCHEMA {schema}")
    yield [f"{postgres_server}?options=-csearch_path%3D{s}" for s in schemas]
    with psycopg.connect(postgres_server, autocommit=True) as db:
        for schema in schemas:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


def test_processes_opening_a_fresh_postgres_store_at_once_all_succeed(
    fresh_schemas: list[str], tmp_path: Path
) -> None:
    reports = race(fresh_schemas, tmp_path / "barrier")
    assert [r for r in reports if not r["ok"]] == []
    assert len(reports) == PROCESSES * ROUNDS
    from connectsw.core.stores import open_store

    for url in fresh_schemas:
        store = open_store(url)
        assert len(store.list_executions(limit=100)) == PROCESSES
        store.close()
