"""The scheduler marks a task Dask runs a second time; a first run is unmarked.

A real 2-process LocalCluster: a task's result is lost with its worker (kill -9)
while the client still wants it, so Dask recomputes it on the other worker. The
runner skips its store read only for unmarked runs (core/reruns.py).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from distributed import Client, LocalCluster

from connectsw.core.graph import task_key
from connectsw.core.reruns import marks_reruns, may_be_rerun

pytestmark = pytest.mark.slow


@pytest.fixture
def client() -> Any:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={
                "dashboard": False,
                "dashboard_address": "127.0.0.1:0",
                "allowed_failures": 0,
            },
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_a_recomputed_task_is_marked_and_a_first_run_is_not(client: Client) -> None:
    assert marks_reruns(client)
    key = task_key("exec-1", 0, "a", "1.1")
    (future,) = client.get({key: (may_be_rerun,)}, [key], sync=False)
    assert future.result(timeout=30) is False
    (holder,) = client.who_has([future])[key]
    pid = client.run(os.getpid)[holder]

    os.kill(pid, signal.SIGKILL)  # its result dies with it; the future still wants it
    deadline = time.monotonic() + 30
    while holder in client.scheduler_info()["workers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.result(timeout=60) is True  # recomputed on the other worker, marked


def test_a_first_run_of_another_key_is_unmarked(client: Client) -> None:
    assert marks_reruns(client)
    (future,) = client.get({"plain-key": (may_be_rerun,)}, ["plain-key"], sync=False)
    assert future.result(timeout=30) is False  # first run: unmarked


def test_outside_a_worker_every_run_may_be_a_rerun() -> None:
    assert may_be_rerun() is True
