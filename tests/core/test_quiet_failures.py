"""What ConnectSW hands to Dask shows no secret, and a store gone away under a running
stage is said in one line per background thread, without tracebacks (trial 8b, F1, F8).

F1: distributed logged ``Compute Failed ... Task: <Task ... TaskCall(store_url=
'postgresql://u:Sekr1tPW@...'`` (the default dataclass repr). F8: the progress
thread died with an uncaught StoreError, the lease heartbeat logged a traceback
every tick, and the worker's "Compute Failed" block carried a traceback.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from connectsw.core.errors import StoreError
from connectsw.core.graph import task_key
from connectsw.core.redact import HiddenUrl
from connectsw.core.runner import TaskCall

PASSWORD = "Sekr1tPW"
URL = f"postgresql://u:{PASSWORD}@127.0.0.1:1/postgres"


def test_a_task_calls_repr_and_str_mask_the_store_password() -> None:
    call = TaskCall(store_url=URL, execution_id="exec_1", round=0, task_id="a", token=3)
    for text in (repr(call), str(call), f"{call}", repr((call, 1))):
        assert PASSWORD not in text
        assert "postgresql://u:***@127.0.0.1:1/postgres" in text
        assert "task_id='a'" in text
    assert pickle.loads(pickle.dumps(call)) == call  # the call itself keeps the URL
    assert pickle.loads(pickle.dumps(call)).store_url == URL


def test_a_url_given_to_client_run_has_a_masked_repr() -> None:
    """Dask's "Run Failed" log quotes ``client.run``'s arguments by their repr."""
    url = HiddenUrl(URL)
    assert url == URL and str(url) == URL and f"{url}" == URL and hash(url) == hash(URL)
    assert PASSWORD not in repr(url) and PASSWORD not in repr((url,))
    back = pickle.loads(pickle.dumps(url))
    assert back == URL and type(back) is HiddenUrl


def test_a_failing_task_calls_worker_log_holds_no_password_nor_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task call whose store cannot be reached fails in a real (in-process) Dask
    worker: its "Compute Failed" line names the task, without the call's repr (the
    password) or the traceback."""
    from distributed import Client, LocalCluster, wait

    call = TaskCall(store_url=URL, execution_id="exec_f1", round=0, task_id="a", token=1)
    key = task_key(call.execution_id, call.round, "a", "1.1")
    with (
        caplog.at_level(logging.INFO),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        (future,) = client.get({key: (call,)}, [key], sync=False)
        wait([future], timeout=60)
        assert future.status == "error"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in text
    failed = [
        r for r in caplog.records if r.name == "distributed.worker" and "exec_f1" in r.getMessage()
    ]
    assert failed, text
    for record in failed:
        message = record.getMessage()
        assert "\n" not in message and "Traceback" not in message, message
        assert message.startswith("task a of exec_f1 failed in its Dask worker: "), message
        assert record.exc_info is None


class _DownStore:
    """A store whose server went away (``up`` brings it back)."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if not self.up:
            raise StoreError(
                "the PostgreSQL store at postgresql://u:***@127.0.0.1:5432/postgres failed:"
                " couldn't get a connection after 10.00 sec"
            )

    def heartbeat(self, *args: Any) -> bool:
        self._check()
        return True

    def execution_status(self, *args: Any) -> None:
        return None

    def events(self, *args: Any, **kwargs: Any) -> list[Any]:
        self._check()
        return []

    def release(self, *args: Any) -> None:
        pass


def _uncaught() -> tuple[list[Any], Any]:
    seen: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = seen.append
    return seen, previous


def test_the_lease_heartbeat_logs_one_line_until_it_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectsw.core.lease import Lease

    monkeypatch.delenv("CONNECTSW_DEBUG", raising=False)
    store = _DownStore()
    seen, previous = _uncaught()
    try:
        with caplog.at_level(logging.INFO, logger="connectsw.lease"):
            lease = Lease(store, "exec_1", "host:1", 1, heartbeat_interval=0.01)  # type: ignore[arg-type]
            with lease:
                deadline = time.monotonic() + 10
                while store.calls < 10 and time.monotonic() < deadline:
                    time.sleep(0.01)
                store.up = True
                calls = store.calls
                while store.calls < calls + 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
    finally:
        threading.excepthook = previous
    assert not seen
    assert store.calls >= 10
    records = [r for r in caplog.records if r.name == "connectsw.lease"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING], records
    failed, recovered = (r.getMessage() for r in records)
    assert failed.startswith("heartbeat failed for exec_1 (retrying): the PostgreSQL store at")
    assert "\n" not in failed and records[0].exc_info is None
    assert recovered == "heartbeat of exec_1 works again"


def test_the_progress_thread_survives_a_store_error_and_says_it_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from connectsw.cli.progress import Follower

    monkeypatch.delenv("CONNECTSW_DEBUG", raising=False)
    monkeypatch.setattr("connectsw.cli.progress.POLL_SECONDS", 0.01)
    store = _DownStore()
    execution = SimpleNamespace(id="exec_1", plan=SimpleNamespace(tasks=[1], name="p"))
    console = Console(file=io.StringIO(), width=100, color_system=None)
    seen, previous = _uncaught()
    try:
        with caplog.at_level(logging.INFO, logger="connectsw.progress"):
            follower = Follower(store, execution, console)  # type: ignore[arg-type]
            with pytest.raises(RuntimeError, match="the command's own error"), follower:
                deadline = time.monotonic() + 10
                while store.calls < 10 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert follower._thread is not None and follower._thread.is_alive()
                raise RuntimeError("the command's own error")  # not the failed last poll
    finally:
        threading.excepthook = previous
    assert not seen
    records = [r for r in caplog.records if r.name == "connectsw.progress"]
    assert len(records) == 1, records
    assert records[0].getMessage().startswith("progress could not be read (retrying): ")
    assert records[0].exc_info is None


def test_psycopg_pool_warnings_are_quiet() -> None:
    import connectsw.core.stores.postgres  # noqa: F401

    assert not logging.getLogger("psycopg.pool").isEnabledFor(logging.WARNING)
