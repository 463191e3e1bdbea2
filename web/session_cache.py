"""The server's hot path for a presented session token: a lookup reused for a window.

Like web/keys.py for keys: a token's session record is read from the store at
most once per ``window`` seconds (``licensing.key_cache_seconds``); expiry and the
heartbeat timeout are checked on every request against the cached record. A
logout on this server takes effect at once (the entry is dropped); on other
replicas within the window. Written here rather than with a caching library:
the same dozen lines as KeyCache, and the same rule for both.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from connectsw.core.stores.sessions import SessionRecord
from connectsw.licensing.sessions import Sessions

MAX_ENTRIES = 100_000


class SessionCache:
    """Resolves session tokens for the API; ``window`` in seconds (0: always read)."""

    def __init__(
        self, sessions: Sessions, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sessions = sessions
        self.window = window
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, SessionRecord]] = OrderedDict()

    async def resolve(self, token: str) -> SessionRecord:
        """The live session of ``token``; raises LicenseRefused (``invalid_session``,
        ``session_expired``, ``session_ended``) as :meth:`Sessions.resolve`."""
        now = self.clock()
        hit = self._entries.get(token)
        if hit is not None and now - hit[0] < self.window:
            self.sessions.check(hit[1], datetime.now(UTC))
            return hit[1]
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, self.sessions.resolve, token)
        self._entries[token] = (now, record)
        self._entries.move_to_end(token)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        return record

    def forget(self, token: str) -> None:
        """Drop the token's entry (its session was ended or renewed here)."""
        self._entries.pop(token, None)
