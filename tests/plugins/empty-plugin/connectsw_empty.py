"""An entry point that names an object with no hooks (the author pointed at the wrong thing)."""

from __future__ import annotations

from typing import Any


class Plugin:
    """Hook functions would be here; the author forgot them."""

    def register_things(self, register: Any) -> None:
        """Not a hook name, not marked: nothing for pluggy."""


plugin = Plugin()
