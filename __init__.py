"""ConnectSW: an open-core orchestrator for agentic software work."""

from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("connectsw")
"""Marker plugin authors decorate their hook implementations with."""


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata only when asked for:
    # importlib.metadata costs the light commands (--help, status) ~30 ms.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("connectsw")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0.0.0"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "hookimpl"]
