"""ConnectSW: an open-core orchestrator for agentic software work."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("connectsw")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

hookimpl = pluggy.HookimplMarker("connectsw")
"""Marker plugin authors decorate their hook implementations with."""

__all__ = ["__version__", "hookimpl"]
