"""Plugin hooks and the plugin manager (built-ins and entry points, one path)."""

from connectsw.plugins.manager import get_plugin_manager, plugin_infos
from connectsw.plugins.registry import Registries, get_registries

__all__ = ["Registries", "get_plugin_manager", "get_registries", "plugin_infos"]
