"""A plugin whose import fails, as when a dependency is missing."""

from __future__ import annotations

raise ImportError("No module named 'connectsw_broken_dependency'")
