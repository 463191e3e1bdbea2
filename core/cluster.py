"""The Dask cluster stages run on: an in-process LocalCluster or an existing scheduler."""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client, LocalCluster

from connectsw.conf.settings import DaskSettings
from connectsw.core.errors import ConfigError


def quiet_dask_logs() -> None:
    """Keep distributed's informational logs out of a user's terminal."""
    for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)


def connect(settings: DaskSettings) -> tuple[Client, LocalCluster | None]:
    """A client for the configured cluster, and the LocalCluster if one was started."""
    if settings.scheduler_address:
        try:
            return Client(settings.scheduler_address, timeout=10), None
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {settings.scheduler_address}: {exc}"
            ) from None
    kwargs: dict[str, Any] = {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "processes": settings.processes,
        "dashboard_address": None,
        # No web dashboard at all: it would bind port 8787 and warn when that is taken.
        "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    }
    if settings.processes:
        kwargs["silence_logs"] = logging.ERROR
    cluster = LocalCluster(**kwargs)
    return Client(cluster), cluster
