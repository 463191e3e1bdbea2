"""What a workspace holds, for the rules' ``applies_to``: project types, tests, a service, a page.

Detection reads file names only (one bounded walk), plus ``package.json`` and the
stage's task outputs for a service's start command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectsw.core import textfiles

SKIP_DIRS = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", "build", "dist"}
)
#: Files looked at, at most, when a workspace is walked.
WALK_LIMIT = 20_000
#: Folders where the generated page is looked for, in order (``index.html`` in each).
PAGE_DIRS = ("web", "public", "static", "frontend", ".")

#: Every trait a rule may name in ``applies_to``, with what it means.
TRAITS: dict[str, str] = {
    "python": "Python files (*.py)",
    "python-project": "an installable Python project (pyproject.toml or setup.py)",
    "node": "a Node project (package.json)",
    "tests": "Python test files (test_*.py, *_test.py)",
    "service": "a service with a start command (gates.server_command, a task's "
    "`entrypoint` output, service/app.py, or package.json's start script)",
    "page": "a web page (index.html in web/, public/, static/, frontend/ or the root)",
    "git": "a git repository",
}

_PORT_ARG = re.compile(r"(--port[= ])\d+")


class BadCommand(ValueError):
    """A start command that cannot be split into words (broken POSIX quoting); the
    message names where it came from."""


def _words(command: str, source: str) -> list[str]:
    """``command`` split as a POSIX shell would; BadCommand naming ``source`` if not."""
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise BadCommand(f"{source} is not a valid command: {str(exc).lower()}") from None


def is_test_file(name: str) -> bool:
    """True for Python test file names: ``test_*.py`` or ``*_test.py``."""
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def walk(root: Path, limit: int = WALK_LIMIT) -> list[Path]:
    """Regular files under ``root`` (relative), skipping VCS, virtualenv and build
    folders; FIFOs, sockets and devices are left out (reading one would wait)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            if not textfiles.is_regular(Path(folder, name)):
                continue
            found.append(base / name)
            if len(found) >= limit:
                return found
    return found


def traits(
    workspace: Path,
    config: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
) -> frozenset[str]:
    """The :data:`TRAITS` that ``workspace`` has."""
    config = config or {}
    have: set[str] = set()
    if not workspace.is_dir():
        return frozenset()
    for rel in walk(workspace):
        name = rel.name
        if name.endswith(".py"):
            have.add("python")
            if is_test_file(name):
                have.add("tests")
        if len(rel.parts) == 1 and name in ("pyproject.toml", "setup.py"):
            have.add("python-project")
        if len(rel.parts) == 1 and name == "package.json":
            have.add("node")
    if config.get("test_command"):
        have.add("tests")
    if page_file(workspace) is not None:
        have.add("page")
    try:
        if service_command(workspace, config, results) is not None:
            have.add("service")
    except BadCommand:  # one was given: server-start runs and fails with the reason
        have.add("service")
    if (workspace / ".git").exists():
        have.add("git")
    return frozenset(have)


def page_file(workspace: Path) -> Path | None:
    """The generated page's ``index.html``, or None."""
    for folder in PAGE_DIRS:
        candidate = workspace / folder / "index.html"
        if candidate.is_file():
            return candidate
    return None


def python_argv(argv: list[str]) -> list[str]:
    """``argv`` with a leading ``python``/``python3`` replaced by this interpreter."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def package_json(workspace: Path) -> dict[str, Any] | None:
    """``package.json`` as a dict, or None if absent or not a JSON object."""
    try:
        data = json.loads((workspace / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def service_command(
    workspace: Path,
    config: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
) -> list[str] | None:
    """The command that starts the workspace's service, ``{port}`` where its port goes.

    In order: ``gates.server_command``; a task's ``entrypoint`` output (its
    ``--port N`` becomes ``--port {port}``); ``service/app.py`` (the built-in
    backend's service); ``package.json``'s ``start`` script (``npm start``, the
    port in ``PORT``). None if there is none. ``python`` is this interpreter.

    Raises BadCommand when the command found cannot be split into words (broken
    POSIX quoting in an agent's ``entrypoint``; settings are checked at load).
    """
    config = config or {}
    configured = str(config.get("server_command") or "")
    if configured:
        return python_argv(_words(configured, "gates.server_command"))
    for task_id, result in (results or {}).items():
        outputs = getattr(result, "outputs", None) or {}
        entry = outputs.get("entrypoint") if isinstance(outputs, dict) else None
        if isinstance(entry, str) and entry.strip():
            entry = _PORT_ARG.sub(r"\g<1>{port}", entry)
            return python_argv(_words(entry, f"task {task_id}'s entrypoint output"))
    if (workspace / "service" / "app.py").is_file():
        return [sys.executable, "-m", "service.app", "--port", "{port}"]
    pkg = package_json(workspace)
    if pkg is not None and isinstance(pkg.get("scripts"), dict) and pkg["scripts"].get("start"):
        return ["npm", "start", "--silent"]
    return None
