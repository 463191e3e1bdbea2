"""The reply format for files: a ``FILE: path`` line, then the file in a fenced block.

    FILE: service/app.py
    ```python
    print("hello")
    ```

The fence is three or more backticks (or tildes) and closes at a line of the same
character at least as long, as CommonMark has it: a Markdown file that holds
```` ``` ```` blocks itself is fenced with four backticks. The prompt
``file-format.md`` tells the model so. Text outside the blocks is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from connectsw.core.errors import LLMBadResponse

_FILE = re.compile(r"^\s*(?:\*\*)?FILE:\s*`?([^`*\s]+)`?(?:\*\*)?\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class FileBlock:
    """One file of a reply: its relative path and whole text."""

    path: str
    text: str


def check_path(path: str, allowed: tuple[str, ...] = ()) -> str:
    """``path`` if it is a safe relative POSIX path (under one of ``allowed`` if given).

    Raises :class:`LLMBadResponse` for an absolute path, ``..``, ``.git`` or a path
    outside ``allowed``.
    """
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or ".git" in pure.parts or not pure.parts:
        raise LLMBadResponse(f"the model named an unsafe file path {path!r}")
    if allowed and not any(path == a or path.startswith(a) for a in allowed):
        raise LLMBadResponse(
            f"the model wrote {path!r}, outside what this agent writes ({', '.join(allowed)})"
        )
    return str(pure)


def parse_files(reply: str, allowed: tuple[str, ...] = ()) -> list[FileBlock]:
    """Every ``FILE:`` block of ``reply``, in order (a later block of a path replaces
    an earlier one). Raises :class:`LLMBadResponse` when a block is not closed or a
    path is unsafe."""
    lines = reply.splitlines()
    files: dict[str, str] = {}
    i = 0
    while i < len(lines):
        match = _FILE.match(lines[i])
        i += 1
        if not match:
            continue
        path = check_path(match.group(1), allowed)
        while i < len(lines) and not lines[i].strip():
            i += 1
        fence = _FENCE.match(lines[i]) if i < len(lines) else None
        if fence is None:
            raise LLMBadResponse(f"the model's FILE: {path} is not followed by a fenced block")
        marker = fence.group(1)
        closing = re.compile(rf"^\s{{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise LLMBadResponse(f"the model's block for {path} is not closed")
        i += 1
        files[path] = "\n".join(body) + "\n"
    return [FileBlock(p, t) for p, t in files.items()]


def strip_fence(reply: str) -> str:
    """A whole-document reply without the one fenced block wrapped around it, if any."""
    text = reply.strip()
    lines = text.splitlines()
    if len(lines) >= 2:
        fence = _FENCE.match(lines[0])
        if fence and lines[-1].strip() == fence.group(1):
            return "\n".join(lines[1:-1]).strip() + "\n"
    return text + "\n"
