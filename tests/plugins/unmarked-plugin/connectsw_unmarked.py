"""A plugin with two hook functions pluggy would ignore in silence, and one good one.

``register_agents`` has no marker at all; ``on_task_event`` is marked for another
project. Only ``register_gates`` (marked with ``connectsw.hookimpl``) is a hook.
"""

from __future__ import annotations

from typing import Any

import pluggy

from connectsw import hookimpl

other_hookimpl = pluggy.HookimplMarker("other")
EVENTS: list[Any] = []


class AlwaysPasses:
    """A gate rule that passes."""

    name = "unmarked-ok"
    description = "Always passes (unmarked-plugin fixture)."

    def applies(self, ctx: Any) -> bool:
        return True

    def evaluate(self, ctx: Any) -> Any:
        raise NotImplementedError


class Echo:
    """Would be an agent, if register_agents were marked."""

    name = "unmarked-echo"
    description = "Never registered."

    def run(self, ctx: Any) -> dict[str, Any]:
        return {"summary": "echo"}


def register_agents(register: Any) -> None:
    register(Echo())


@other_hookimpl
def on_task_event(event: Any) -> None:
    EVENTS.append(event)


@hookimpl
def register_gates(register: Any) -> None:
    register(AlwaysPasses())
