"""Events: persisted with the state change they describe, then passed to plugin hooks."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable

from connectsw.core.models import Event
from connectsw.plugins.manager import (
    describe_error,
    get_plugin_manager,
    plugin_code_error,
    trace,
    trace_done,
)
from connectsw.plugins.output import plugin_output_to_stderr

log = logging.getLogger("connectsw.events")
_lock = threading.Lock()
_reported: set[tuple[str, str]] = set()  # (plugin, hook) already reported in this process


def dispatch(events: Iterable[Event]) -> None:
    """Call the event hook matching each event's kind, each plugin's listener on its own.

    A listener that raises does not stop the others: it is reported once per plugin
    and hook, in one line naming the plugin (its traceback with ``CONNECTSW_DEBUG=1``).
    """
    hook = get_plugin_manager().hook
    for event in events:
        prefix = event.kind.split(".", 1)[0]
        caller = (
            hook.on_task_event
            if prefix == "task"
            else hook.on_checkpoint_event
            if prefix == "checkpoint"
            else hook.on_execution_event
        )
        for impl in reversed(caller.get_hookimpls()):  # pluggy's own order: last first
            trace(caller.name, impl.plugin_name, f"call ({event.kind})")
            started = time.perf_counter()
            try:
                with plugin_output_to_stderr():
                    impl.function(*[{"event": event}[arg] for arg in impl.argnames])
            except Exception as exc:
                trace(caller.name, impl.plugin_name, f"failed: {describe_error(exc)}")
                _report(impl.plugin_name, caller.name, exc)
            else:
                trace_done(caller.name, impl.plugin_name, started)


def _report(plugin: str, hook: str, exc: Exception) -> None:
    key = (plugin, hook)
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
    error = plugin_code_error(plugin, hook, exc)
    if os.environ.get("CONNECTSW_DEBUG"):
        log.warning("%s; later failures of this listener are not shown", error, exc_info=exc)
    else:
        log.warning("%s; later failures of this listener are not shown", error)
