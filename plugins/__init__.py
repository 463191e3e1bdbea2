"""Plugin hooks and the plugin manager (built-ins and entry points, one path).

Each plugin loads on its own: one that fails is listed by ``connectsw plugins``
with its error and left out, and only plans needing what it may provide fail.
``CONNECTSW_LOAD_PLUGINS=a,b`` loads only those third-party plugins;
``CONNECTSW_STRICT_PLUGINS=1`` (for CI) makes any plugin problem, including a
hook function not marked ``@connectsw.hookimpl``, a PluginError (exit 3);
``CONNECTSW_TRACE_PLUGINS=1`` traces hook calls. See :mod:`.manager`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectsw.plugins.manager import add_plugin_commands, get_plugin_manager, plugin_infos
    from connectsw.plugins.registry import Registries, get_registries

_EXPORTS = {
    "add_plugin_commands": "connectsw.plugins.manager",
    "get_plugin_manager": "connectsw.plugins.manager",
    "plugin_infos": "connectsw.plugins.manager",
    "Registries": "connectsw.plugins.registry",
    "get_registries": "connectsw.plugins.registry",
}
"""Public name -> its module, imported on first access: ``connectsw.plugins.environment``
(read by the light commands) must not load pluggy and importlib.metadata with it."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Registries",
    "add_plugin_commands",
    "get_plugin_manager",
    "get_registries",
    "plugin_infos",
]
