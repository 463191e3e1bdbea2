"""Events: persisted with the state change they describe, then passed to plugin hooks."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from connectsw.core.models import Event
from connectsw.plugins.manager import get_plugin_manager

log = logging.getLogger("connectsw.events")


def dispatch(events: Iterable[Event]) -> None:
    """Call the event hook matching each event's kind; a failing plugin is only logged."""
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
        try:
            caller(event=event)
        except Exception:
            log.exception("plugin hook failed for event %s", event.kind)
