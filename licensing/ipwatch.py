"""The multi-IP check (reference §3.1 step 6, §3.2): flags a license, never blocks it.

Per license, the distinct client IPs seen in the last ``window`` seconds (24 h),
in memory: no scan of usage files per request. A license is suspicious when it
has more than ``ip_threshold × max_users`` of them (reference §3.2: FREE 2, PRO 3,
BUSINESS 10, ENTERPRISE 50 per seat). Each license keeps at most
``MAX_PER_LICENSE`` addresses (the oldest are forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from connectsw.licensing.models import License

WINDOW = 86_400.0
MAX_PER_LICENSE = 1024
MAX_LICENSES = 100_000


class RecentIPs:
    """Distinct IPs per license over a sliding window (seconds)."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    def observe(self, license: License, ip: str) -> tuple[int, int] | None:
        """Record ``ip`` for the license; (distinct IPs, threshold) when over it, else None.

        Only the request that crosses the threshold, or brings a new address while
        over it, is reported, so a flag is raised once per new address.
        """
        now = self.clock()
        ips = self._seen.get(license.id)
        if ips is None:
            ips = self._seen[license.id] = OrderedDict()
            while len(self._seen) > MAX_LICENSES:
                self._seen.popitem(last=False)
        self._seen.move_to_end(license.id)
        new = ip not in ips
        ips[ip] = now
        ips.move_to_end(ip)
        while ips and next(iter(ips.values())) <= now - self.window:
            ips.popitem(last=False)
        while len(ips) > MAX_PER_LICENSE:
            ips.popitem(last=False)
        threshold = license.entitlements.ip_threshold * license.entitlements.max_users
        if new and len(ips) > threshold:
            return len(ips), threshold
        return None
