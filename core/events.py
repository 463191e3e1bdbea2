"""Events: persisted with the state change they describe, then passed to plugin hooks."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable

from connectsw.core.models import Event
from connectsw.plugins.manager import (
    DEFAULT_LISTENER_TIMEOUT,
    LISTENER_TIMEOUT_ENV,
    UNFINISHED,
    call_bounded,
    describe_error,
    get_plugin_manager,
    listener_timeout,
    plugin_code_error,
    trace,
    trace_done,
)

log = logging.getLogger("connectsw.events")
_lock = threading.Lock()
_reported: set[tuple[str, str]] = set()  # (plugin, hook) already reported in this process
_stuck: set[tuple[str, str]] = set()  # (plugin, hook) whose call outlived its bound


def dispatch(events: Iterable[Event]) -> None:
    """Call the event hook matching each event's kind, each plugin's listener on its own.

    A listener that raises does not stop the others: it is reported once per plugin
    and hook, in one line naming the plugin (its traceback with ``CONNECTSW_DEBUG=1``).

    Each call runs in a daemon thread (:func:`connectsw.plugins.manager.call_bounded`,
    as every plugin hook call) and is waited for at most
    ``CONNECTSW_PLUGIN_LISTENER_TIMEOUT`` seconds (default 10,
    :func:`connectsw.plugins.manager.listener_timeout`): a listener that hangs
    delays ``cancel`` or ``approve`` by that long, once. Past it, one warning names
    the plugin and the hook, the call is abandoned (Python cannot stop a thread; it
    ends with the process) and that listener is not called again in this process
    (issue 5, kind 7).
    """
    hook = get_plugin_manager().hook
    try:
        bound = listener_timeout()
    except Exception:  # refused when plugins load; never stop a command here
        bound = DEFAULT_LISTENER_TIMEOUT
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
            key = (impl.plugin_name, caller.name)
            if key in _stuck:
                continue
            trace(caller.name, impl.plugin_name, f"call ({event.kind})")
            started = time.perf_counter()
            kwargs = {arg: {"event": event}[arg] for arg in impl.argnames}
            try:
                returned = call_bounded(
                    impl.function, kwargs, bound, f"listener-{impl.plugin_name}"
                )
            except BaseException as exc:  # a listener may even sys.exit()
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if not isinstance(exc, Exception):
                    exc = RuntimeError(f"raised {type(exc).__name__}")
                trace(caller.name, impl.plugin_name, f"failed: {describe_error(exc)}")
                _report(impl.plugin_name, caller.name, exc)
                continue
            if returned is not UNFINISHED:
                trace_done(caller.name, impl.plugin_name, started)
                continue
            with _lock:
                _stuck.add(key)
            trace(caller.name, impl.plugin_name, f"failed: still running after {bound:g} s")
            log.warning(
                "plugin %s: its %s listener did not return within %g s (%s); going on "
                "without it (not called again in this process)",
                impl.plugin_name,
                caller.name,
                bound,
                LISTENER_TIMEOUT_ENV,
            )


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
