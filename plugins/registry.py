"""Registries of what plugins provide (agents, workflows, gate rules).

Discovery hooks are called one implementation at a time, in pluggy's call order,
so every registered item is attributed to its plugin: a collision or an invalid
item is an error naming both.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from connectsw.core.errors import PluginError
from connectsw.plugins.manager import get_plugin_manager, trace

T = TypeVar("T")
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass
class Registry(Generic[T]):
    """Named items of one kind, in registration order, with the plugin of each."""

    kind: str
    required: tuple[str, ...]
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, item: T, plugin: str) -> None:
        """Validate and add ``item``, registered by ``plugin``."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(
                f'Plugin "{plugin}" registered a {self.kind} with an invalid name {name!r} '
                "(lowercase letters, digits, '-', '_', '.')"
            )
        missing = [a for a in self.required if not callable(getattr(item, a, None))]
        if missing:
            raise PluginError(
                f'Plugin "{plugin}" registered {self.kind} "{name}" without {", ".join(missing)}()'
            )
        if name in self.items:
            raise PluginError(
                f'{self.kind.capitalize()} "{name}" from plugin "{plugin}" collides with the one '
                f'from plugin "{self.owners[name]}"'
            )
        self.items[name] = item
        self.owners[name] = plugin

    def get(self, name: str) -> T | None:
        """The item called ``name``, or None."""
        return self.items.get(name)

    def names_of(self, plugin: str) -> list[str]:
        """Names registered by ``plugin``."""
        return [n for n, p in self.owners.items() if p == plugin]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items.values())

    def __contains__(self, name: object) -> bool:
        return name in self.items


@dataclass
class Registries:
    """Everything the loaded plugins registered."""

    agents: Registry[Any]
    workflows: Registry[Any]
    gates: Registry[Any]


def _registrar(registry: Registry[Any], plugin: str) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        registry.add(item, plugin)

    return register


def _collect(pm: pluggy.PluginManager, hook_name: str, registry: Registry[Any]) -> None:
    caller: pluggy.HookCaller = getattr(pm.hook, hook_name)
    # pluggy calls the last-registered implementation first; keep that order.
    for impl in reversed(caller.get_hookimpls()):
        plugin = impl.plugin_name
        trace(f"call {hook_name} -> {plugin}")
        register = _registrar(registry, plugin)
        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f'Plugin "{plugin}" failed in {hook_name}: {exc}') from None


_lock = threading.Lock()
_registries: Registries | None = None


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Ask every plugin what it provides."""
    regs = Registries(
        agents=Registry("agent", ("run",)),
        workflows=Registry("workflow", ("claims", "decompose")),
        gates=Registry("gate rule", ("applies", "evaluate")),
    )
    _collect(pm, "register_agents", regs.agents)
    _collect(pm, "register_workflows", regs.workflows)
    _collect(pm, "register_gates", regs.gates)
    return regs


def get_registries() -> Registries:
    """The registries of the process's plugin manager (built once)."""
    global _registries
    pm = get_plugin_manager()
    with _lock:
        if _registries is None:
            _registries = build_registries(pm)
        return _registries


def reset_registries() -> None:
    """Forget the registries (after the plugin manager is reset)."""
    global _registries
    with _lock:
        _registries = None
