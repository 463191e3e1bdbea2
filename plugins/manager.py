"""The plugin manager: built-in plugins and installed distributions, loaded once.

Built-ins are registered through the same path as third-party plugins. Set
``CONNECTSW_LOAD_PLUGINS`` to a comma-separated list of entry-point or
distribution names to load only those third-party plugins (empty: none), and
``CONNECTSW_TRACE_PLUGINS=1`` to trace every hook call on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from connectsw.core.errors import PluginError
from connectsw.plugins import hookspecs

ENTRY_POINT_GROUP = "connectsw"
DEFAULT_PLUGINS = (
    "connectsw.agents.builtin",
    "connectsw.core.workflows",
    "connectsw.gates.rules",
)

_lock = threading.Lock()
_pm: pluggy.PluginManager | None = None


@dataclass
class PluginSource:
    """Where a loaded plugin came from."""

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)


_sources: dict[str, PluginSource] = {}


def tracing_enabled() -> bool:
    """True when ``CONNECTSW_TRACE_PLUGINS`` asks for hook tracing."""
    return os.environ.get("CONNECTSW_TRACE_PLUGINS", "").lower() not in ("", "0", "false", "no")


def trace(message: str) -> None:
    """Write one trace line to stderr (only when tracing is enabled)."""
    if tracing_enabled():
        print(f"[connectsw trace] {message}", file=sys.stderr, flush=True)


def _allow_list() -> set[str] | None:
    raw = os.environ.get("CONNECTSW_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f'Error registering plugin "{name}": {exc}') from None


def _load() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("connectsw")
    pm.add_hookspecs(hookspecs)
    sources: dict[str, PluginSource] = {}
    for modname in DEFAULT_PLUGINS:
        _register(pm, importlib.import_module(modname), modname)
        sources[modname] = PluginSource(modname, builtin=True)
    allow = _allow_list()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f'Error importing plugin "{ep.name}": {exc}') from None
        _register(pm, plugin, ep.name)
        sources[ep.name] = PluginSource(
            ep.name, builtin=False, distribution=dist, version=ep.dist.version if ep.dist else None
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f'Plugin "{name}" implements an unknown hook: {exc}') from None
    for name, source in sources.items():
        plugin = pm.get_plugin(name)
        source.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    if tracing_enabled():
        pm.add_hookcall_monitoring(
            lambda hook, impls, kwargs: trace(
                f"call {hook} -> {[i.plugin_name for i in impls]} {sorted(kwargs)}"
            ),
            lambda outcome, hook, impls, kwargs: trace(f"done {hook}"),
        )
    _sources.clear()
    _sources.update(sources)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager, loading plugins on first use."""
    global _pm
    with _lock:
        if _pm is None:
            _pm = _load()
        return _pm


def reset_plugin_manager() -> None:
    """Forget loaded plugins so the next use loads them again (for tests)."""
    global _pm
    with _lock:
        _pm = None
        _sources.clear()
    from connectsw.plugins import registry

    registry.reset_registries()


def plugin_sources() -> list[PluginSource]:
    """Where each loaded plugin came from, built-ins first."""
    get_plugin_manager()
    return sorted(_sources.values(), key=lambda s: (not s.builtin, s.name))


def plugin_infos() -> list[dict[str, Any]]:
    """JSON-ready description of each plugin: source, version, hooks and what it provides."""
    from connectsw.plugins.registry import get_registries

    regs = get_registries()
    infos = []
    for source in plugin_sources():
        infos.append(
            {
                "name": source.name,
                "builtin": source.builtin,
                "distribution": source.distribution,
                "version": source.version,
                "hooks": source.hooks,
                "agents": regs.agents.names_of(source.name),
                "workflows": regs.workflows.names_of(source.name),
                "gates": regs.gates.names_of(source.name),
            }
        )
    return infos
