"""Plugin hooks and the plugin manager (built-ins and entry points, one path).

Each plugin loads on its own: one that fails is listed by ``connectsw plugins``
with its error and left out, and only plans needing what it may provide fail.
``CONNECTSW_LOAD_PLUGINS=a,b`` loads only those third-party plugins;
``CONNECTSW_STRICT_PLUGINS=1`` (for CI) makes any plugin problem, including a
hook function not marked ``@connectsw.hookimpl``, a PluginError (exit 3);
``CONNECTSW_TRACE_PLUGINS=1`` traces hook calls. See :mod:`.manager`.
"""

from connectsw.plugins.manager import add_plugin_commands, get_plugin_manager, plugin_infos
from connectsw.plugins.registry import Registries, get_registries

__all__ = [
    "Registries",
    "add_plugin_commands",
    "get_plugin_manager",
    "get_registries",
    "plugin_infos",
]
