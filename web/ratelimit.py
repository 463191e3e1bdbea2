"""Rate limits: per client IP on every ``/v1`` request, and per license by its tier.

Built on the ``limits`` library (moving window, in-process memory storage: exact
within one server process, since checks run on its event loop without a yield
between test and hit). A refusal is 429 ``rate_limited`` with ``Retry-After``
(seconds); every limited response carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window frees a
request; IETF draft "RateLimit header fields for HTTP").
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from limits import RateLimitItem, RateLimitItemPerHour, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from connectsw.licensing.models import License
from connectsw.web.clientip import client_ip
from connectsw.web.errors import ApiError, error_response


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int  # seconds

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


#: Where a request's most constraining limit is kept for the response headers.
STATE_KEY = web.RequestKey("connectsw.ratelimit", Quota)


class RateLimited(ApiError):
    def __init__(self, message: str, quota: Quota) -> None:
        headers = {**quota.headers(), "Retry-After": str(max(1, quota.reset))}
        super().__init__("rate_limited", message, 429, headers)
        self.quota = quota


class _LicenseHour(RateLimitItemPerHour):
    """Requests per hour of one license, counted under a key without the amount.

    ``limits`` puts the amount in its keys, so a license whose limit changed (halved
    by the anti-piracy tier 2, restored by ``license reinstate``) would start a new,
    empty window: 1000 requests, then 500 more after the throttle. One key per
    license keeps the hour's requests: the halved limit counts them.
    """

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(str(i) for i in identifiers), "hour"])


class RateLimits:
    """The server's limits: ``per_ip`` in ``limits`` notation (e.g. ``100/minute``)."""

    def __init__(self, per_ip: str) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_ip = parse(per_ip)
        self._tiers: dict[int, RateLimitItem] = {}  # one item per requests_per_hour

    async def _hit(self, item: RateLimitItem, what: str, *ids: str) -> Quota:
        allowed = await self.limiter.hit(item, *ids)
        stats = await self.limiter.get_window_stats(item, *ids)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        quota = Quota(item.amount, stats.remaining, reset)
        if not allowed:
            raise RateLimited(
                f"too many requests {what}: at most {item.amount} per"
                f" {item.get_expiry()} s; retry in {max(1, reset)} s",
                quota,
            )
        return quota

    async def hit_ip(self, ip: str) -> Quota:
        return await self._hit(self.per_ip, "from this address", "ip", ip)

    async def hit_license(self, license: License) -> Quota:
        """The license's ``requests_per_hour`` (reference §3.1 step 5): its tier's, or
        the halved limit of a throttled license, as the record the key cache holds says
        (so a throttle or a reinstate takes effect within ``licensing.key_cache_seconds``)."""
        n = license.entitlements.requests_per_hour
        item = self._tiers.get(n)
        if item is None:
            item = self._tiers[n] = _LicenseHour(n)
        return await self._hit(item, f"for license {license.id}", "license", license.id)


def remember(request: web.Request, quota: Quota) -> None:
    """Keep the most constraining quota of the request for its response headers."""
    current: Quota | None = request.get(STATE_KEY)
    if current is None or quota.remaining <= current.remaining:
        request[STATE_KEY] = quota


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ratelimit_middleware(limits: Callable[[web.Request], RateLimits]) -> Middleware:
    """Per-IP limit on ``/v1`` paths (the client IP of web/clientip.py); the RateLimit
    headers on every response.

    Outside the error middleware, so error responses carry the headers too.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            try:
                remember(request, await limits(request).hit_ip(client_ip(request)))
            except RateLimited as exc:
                return error_response(exc.code, exc.message, 429, exc.headers)
        response = await handler(request)
        quota: Quota | None = request.get(STATE_KEY)
        if quota is not None and response.status != 429:
            response.headers.update(quota.headers())
        return response

    return middleware
