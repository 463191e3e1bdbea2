"""The environment variables that steer plugin loading, readable without loading plugins.

Light code (the CLI deciding whether strict mode applies before it runs a built-in
command) reads them here; :mod:`connectsw.plugins.manager` documents what each does.
"""

from __future__ import annotations

import os

LOAD_ENV = "CONNECTSW_LOAD_PLUGINS"
STRICT_ENV = "CONNECTSW_STRICT_PLUGINS"
TRACE_ENV = "CONNECTSW_TRACE_PLUGINS"
IMPORT_TIMEOUT_ENV = "CONNECTSW_PLUGIN_IMPORT_TIMEOUT"
LISTENER_TIMEOUT_ENV = "CONNECTSW_PLUGIN_LISTENER_TIMEOUT"


def flag(name: str) -> bool:
    """True when the variable ``name`` is set to anything but empty, 0, false or no."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
