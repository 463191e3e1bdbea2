"""Executions the server runs: one engine, a few threads, one run per execution at a time.

``Engine.run`` blocks until a checkpoint, a failure or the end; the server calls it
in a thread of its own pool so the event loop keeps answering. A decision at a
checkpoint (or ``resume``) starts the next run. Two starts of one execution run
it once: the second is a no-op while the first runs, and the engine's lease
(fencing token) keeps two servers from running it at once.

Workspaces: ``DATA_DIR/workspaces/{license id}/{execution id}``, each a
repository of its own (DESIGN.md "Local mode and server mode").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from connectsw.conf.settings import Settings
from connectsw.core.engine import Engine
from connectsw.core.errors import ConnectSWError
from connectsw.core.models import Execution, Request
from connectsw.core.workspace import clone_bundle, init_own_repo

log = logging.getLogger("connectsw.web.runs")


class Runs:
    """The server's engine and the threads that run executions.

    ``workers`` executions run at once; more wait in the pool's queue.
    """

    def __init__(
        self,
        settings: Settings,
        workers: int,
        on_end: Callable[[str], None] = lambda status: None,
    ) -> None:
        self.settings = settings
        self.on_end = on_end  # called with the status a run ended in (metrics)
        self.engine = Engine(settings)
        self.root = settings.data_dir.expanduser() / "workspaces"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="connectsw-run")
        self._lock = threading.Lock()
        self._running: dict[str, Future[None]] = {}
        self._connected = False

    def workspace(self, license_id: str, execution_id: str) -> Path:
        return self.root / license_id / execution_id

    def submit(self, request: Request, license_id: str, bundle: Path | None) -> Execution:
        """Plan ``request`` in a new workspace of the license (a clone of ``bundle``
        when given) and persist it pending. Blocking; raises ConnectSWError."""
        from connectsw.core.models import new_execution_id

        execution_id = new_execution_id()
        staging = self.workspace(license_id, execution_id)
        if bundle is not None:
            clone_bundle(bundle, staging)
        else:
            init_own_repo(staging)
        try:
            return self.engine.submit(
                request, staging, license_id=license_id, execution_id=execution_id
            )
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise

    def start(self, execution_id: str) -> None:
        """Run the execution in the background unless it runs already."""
        with self._lock:
            running = self._running.get(execution_id)
            if running is not None and not running.done():
                return
            self._running[execution_id] = self._pool.submit(self._run, execution_id)

    def _run(self, execution_id: str) -> None:
        try:
            with self._lock:
                if not self._connected:  # the first run starts the Dask cluster
                    _ = self.engine.client
                    self._connected = True
            ended = self.engine.run(execution_id)
            self.on_end(ended.status.value)
        except ConnectSWError as exc:  # recorded on the execution by the engine
            log.warning("execution %s stopped: %s", execution_id, exc)
        except Exception:
            log.exception("execution %s failed in the server", execution_id)
        finally:
            with self._lock:
                self._running.pop(execution_id, None)

    def resume_interrupted(self, limit: int = 1000) -> list[str]:
        """Start every server execution (one with a license) whose runner died: a
        server killed mid-run, on this machine or a replica. Returns their ids."""
        from connectsw.core.models import ExecutionStatus

        started = []
        for execution in self.engine.store.list_executions(limit):
            if execution.license_id is None or self.running(execution.id):
                continue
            if self.engine.status(execution) is ExecutionStatus.INTERRUPTED:
                self.start(execution.id)
                started.append(execution.id)
        return started

    def running(self, execution_id: str) -> bool:
        with self._lock:
            future = self._running.get(execution_id)
            return future is not None and not future.done()

    def close(self) -> None:
        """Stop taking runs; runs in progress are left to their leases (a restarted
        server or ``resume`` continues them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.engine.close()


class Uploads:
    """Uploaded git bundles, per license: ``DATA_DIR/uploads/{license id}/{bundle id}``."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.data_dir.expanduser() / "uploads"

    def new_path(self, license_id: str, bundle_id: str) -> Path:
        folder = self.root / license_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / bundle_id

    def path(self, license_id: str, bundle_id: str) -> Path | None:
        """The license's bundle, or None (another license's is None too)."""
        if not bundle_id.startswith("bnd_") or not bundle_id[4:].isalnum():
            return None
        path = self.root / license_id / bundle_id
        return path if path.is_file() else None
