"""The server's hot path for a presented license key: HMAC check, then a cached lookup.

Per request: the key's tag is checked (HMAC-SHA256, no store, no signature);
the license found for its digest is reused for ``window`` seconds
(``licensing.key_cache_seconds``), so the store is read at most once per key per
window, and a suspension or revocation takes effect within it on every replica.
Expiry, suspension and revocation are checked on every request against the
cached record (reference §3.1 steps 1-4).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from connectsw.licensing.keys import key_digest, parse_key
from connectsw.licensing.models import License
from connectsw.licensing.service import Licenses, check_license_record

MAX_ENTRIES = 100_000


class KeyCache:
    """Validates keys for the API; ``window`` in seconds (0: always read the store)."""

    def __init__(
        self,
        licenses: Licenses,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.licenses = licenses
        self.window = window
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, License | None]] = OrderedDict()
        self.lookups = 0  # store reads, for tests and metrics
        # Exact key text -> (when its license was read, the license, its public id).
        self._by_text: dict[str, tuple[float, License, str]] = {}

    async def validate(self, key_text: str) -> License:
        """The license of a valid key; raises LicenseRefused with the reference's reason.

        A key seen within the window is matched by its exact text: its tag was checked
        when it entered the cache, so the HMAC is not computed again (the cache holds
        only keys that passed it)."""
        now = self.clock()
        seen = self._by_text.get(key_text)
        if seen is not None and now - seen[0] < self.window:
            return check_license_record(seen[1], seen[2])
        key = parse_key(key_text, self.licenses.secret)
        digest = key_digest(key)
        hit = self._entries.get(digest)
        if hit is not None and now - hit[0] < self.window:
            record = hit[1]
        else:
            loop = asyncio.get_running_loop()
            record = await loop.run_in_executor(None, self.licenses.lookup, key)
            self.lookups += 1
            self._entries[digest] = (now, record)
            self._entries.move_to_end(digest)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        if record is not None:
            self._by_text[key_text] = (self._entries[digest][0], record, key.public_id)
            while len(self._by_text) > MAX_ENTRIES:
                self._by_text.pop(next(iter(self._by_text)))
        return check_license_record(record, key.public_id)
