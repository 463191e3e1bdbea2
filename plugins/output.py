"""Where plugin code's prints go: to stderr, so that stdout holds only the command's
output (``--json`` stays parseable).

Plugin code runs in many threads at once (event listeners, agents run in threads,
workflows, gate rules), beside ConnectSW's own output (the progress display, the
JSON answer). Swapping ``sys.stdout`` for the whole process
(:func:`contextlib.redirect_stdout`) would also move what other threads print, so
:func:`plugin_output_to_stderr` installs a router as ``sys.stdout`` that sends the
writes of the threads inside the block to ``sys.stderr`` and every other thread's
to the stream it replaced. Written here because neither the standard library nor
a maintained package offers a per-thread stdout.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_local = threading.local()
_lock = threading.Lock()
_users = 0
_router: _ThreadRouter | None = None


class _ThreadRouter:
    """A text stream standing in for ``sys.stdout``: a thread inside
    :func:`plugin_output_to_stderr` writes to ``sys.stderr``, any other to ``inner``.
    Everything else (``fileno``, ``isatty``, ``encoding``...) is the inner stream's."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def _target(self) -> TextIO:
        return sys.stderr if getattr(_local, "depth", 0) else self.inner

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """Within the block, what this thread prints to ``sys.stdout`` goes to stderr.

    Other threads' output is unchanged. Nested and concurrent blocks are fine; the
    router is removed when the last block ends (if ``sys.stdout`` is still it).
    """
    global _users, _router
    with _lock:
        if not isinstance(sys.stdout, _ThreadRouter):
            sys.stdout.flush()
            _router = _ThreadRouter(sys.stdout)
            sys.stdout = _router
        _users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        with _lock:
            _users -= 1
            if _users == 0 and _router is not None:
                if sys.stdout is _router:
                    sys.stdout = _router.inner
                _router = None
