"""``/metrics``: Prometheus text through ``prometheus-client`` (reference "Monitoring").

The reference's metric list, as Prometheus names: requests (by route template,
method and status), request latency (histogram, seconds), errors (4xx/5xx by
stable code), rate limits exceeded and suspicious activity (security events by
kind). One registry per application, so several apps in one process (tests)
keep their own counts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    """The server's counters and histograms, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "connectsw_http_requests",
            "API requests by route template, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "connectsw_http_request_duration_seconds",
            "Time to answer an API request, seconds.",
            ["endpoint"],
            registry=self.registry,
        )
        self.errors = Counter(
            "connectsw_http_errors",
            "Error responses by stable error code.",
            ["code"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "connectsw_rate_limits_exceeded",
            "Requests refused with 429 rate_limited.",
            registry=self.registry,
        )
        self.suspicious = Counter(
            "connectsw_suspicious_activity",
            "Security events recorded (licenses flagged, never blocked), by kind.",
            ["kind"],
            registry=self.registry,
        )

    def middleware(self) -> Middleware:
        """Counts every request (outermost: sees the final status)."""

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            response = await handler(request)
            route = request.match_info.route.resource
            endpoint = route.canonical if route is not None else "unmatched"
            self.requests.labels(endpoint, request.method, str(response.status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - start)
            if response.status >= 400:
                code = response.headers.get("X-Error-Code", str(response.status))
                self.errors.labels(code).inc()
                if response.status == 429:
                    self.rate_limited.inc()
            return response

        return count

    async def handler(self, request: web.Request) -> web.Response:
        body = render(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
