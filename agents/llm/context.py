"""What the agents tell a model about the project beyond the request.

Project memory comes from :mod:`connectsw.core.memory` when it is installed (its
``agent_context(ctx, query, limit)`` returning short texts); until then, and when
it has nothing, :func:`project_memory` is empty.
"""

from __future__ import annotations

import logging

from connectsw.agents.base import TaskContext
from connectsw.core.errors import is_utf8

log = logging.getLogger("connectsw.llm")

MEMORY_ITEMS = 8


def project_memory(ctx: TaskContext, query: str, limit: int = MEMORY_ITEMS) -> list[str]:
    """The project's remembered decisions and notes best matching this task, as lines
    (``[type] content``): the engine's ``ctx.memories`` for an agent type with
    ``uses_memory`` (core/memory_auto.py), [] otherwise. ``query`` is unused: the
    engine ranked them for the task already."""
    del query
    return [f"[{m.get('type', 'note')}] {m.get('content', '')}" for m in ctx.memories[:limit]]


def brief(ctx: TaskContext, task: str, request: str | None = None) -> str:
    """The user message an agent sends a model: ``task``, the request (``request`` or
    the execution's text, else the task's title), the PRD/architecture/ADRs in the
    workspace, the project's memory and the checkpoint feedback, as Markdown."""
    request = request or ctx.request.text or ctx.task.title
    return "\n".join(
        [
            task + "\n",
            f"## Request\n\n{request}\n",
            documents(ctx, design_paths(ctx)),
            section("Project memory", project_memory(ctx, request)),
            section("Feedback to incorporate", ctx.feedback, "No feedback received yet."),
        ]
    )


def section(title: str, items: list[str], empty: str = "None.") -> str:
    """A Markdown section for a prompt: ``## title`` then bullets (or ``empty``)."""
    body = "\n".join(f"- {' '.join(i.split())}" for i in items) if items else empty
    return f"## {title}\n\n{body}\n"


def documents(ctx: TaskContext, paths: list[str]) -> str:
    """The workspace's files at ``paths`` (those that exist), each under its path."""
    parts = []
    for path in paths:
        text = ctx.read(path)
        if text:
            parts.append(f"## {path}\n\n````markdown\n{text.rstrip()}\n````\n")
    return "\n".join(parts)


def design_paths(ctx: TaskContext) -> list[str]:
    """The PRD, the architecture and every ADR present in the workspace."""
    adr = ctx.path("docs/adr")
    found = adr.glob("*.md") if adr.is_dir() else []
    adrs = sorted(f"docs/adr/{p.name}" for p in found if is_utf8(p.name))
    return ["docs/PRD.md", "docs/architecture.md", *adrs]


#: Source files shown to a model changing existing code, at most this many characters.
SOURCE_BUDGET = 60_000
SOURCE_SUFFIXES = (".py", ".js", ".html", ".css", ".toml", ".txt", ".cfg")


def sources(ctx: TaskContext) -> str:
    """The project's source files (not docs, not hidden), in ``FILE:`` form, bounded."""
    root = ctx.workspace
    parts: list[str] = []
    used = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            not is_utf8(rel)  # a name that is not UTF-8 cannot go into a JSON request
            or not path.is_file()
            or any(part.startswith(".") for part in rel.split("/"))
            or "__pycache__" in rel
            or not rel.endswith(SOURCE_SUFFIXES)
        ):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if used + len(text) > SOURCE_BUDGET:
            parts.append(f"(more files not shown: {rel} ...)")
            break
        used += len(text)
        parts.append(f"FILE: {rel}\n````\n{text.rstrip()}\n````\n")
    return "\n".join(parts)
