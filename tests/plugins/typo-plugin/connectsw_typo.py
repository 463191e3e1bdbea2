"""A plugin that marks a misspelt hook (``register_agentz``): an error for this plugin only."""

from __future__ import annotations

from typing import Any

from connectsw import hookimpl


class Writer:
    name = "typo-writer"
    description = "Registered through the misspelt hook, so never."

    def run(self, ctx: Any) -> dict[str, Any]:
        return {"summary": "written"}


@hookimpl
def register_agentz(register: Any) -> None:
    register(Writer())
