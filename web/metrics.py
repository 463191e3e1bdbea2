"""``/metrics``: Prometheus text through ``prometheus-client`` (reference "Monitoring").

The reference's metric list, as Prometheus names: requests (by route template,
method and status), request latency (histogram, seconds), errors (4xx/5xx by
stable code), rate limits exceeded and suspicious activity (security events by
kind), executions started / completed / failed, active licenses by tier
(read from the store at each scrape). One registry per application, so several
apps in one process (tests) keep their own counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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

        self.executions_started = Counter(
            "connectsw_executions_started",
            "Executions submitted through the API.",
            registry=self.registry,
        )
        self.executions_completed = Counter(
            "connectsw_executions_completed",
            "Executions the server ran to completion.",
            registry=self.registry,
        )
        self.executions_failed = Counter(
            "connectsw_executions_failed",
            "Server runs that ended failed or stopped by a quality gate.",
            registry=self.registry,
        )
        self._scan_metrics()

    def _scan_metrics(self) -> None:
        self.scans = Counter(
            "connectsw_antipiracy_scans", "Anti-piracy scans run by the server.",
            registry=self.registry,
        )  # fmt: skip
        self.flagged = Gauge(
            "connectsw_antipiracy_flagged", "Licenses the last scan flagged.",
            registry=self.registry,
        )  # fmt: skip
        self.actions = Counter(
            "connectsw_antipiracy_actions", "Response-tier actions the scans took.",
            registry=self.registry,
        )  # fmt: skip

    def scanned(self, flagged: int, taken: int) -> None:
        """Count an anti-piracy scan: licenses it flagged, actions it took."""
        self.scans.inc()
        self.flagged.set(flagged)
        self.actions.inc(taken)

    def count_licenses(self, active_by_tier: Callable[[], dict[str, int]]) -> None:
        """Expose ``connectsw_licenses_active{tier}``, asked of ``active_by_tier`` at
        each scrape (reference "licenses.active.count")."""
        self.registry.register(_ActiveLicenses(active_by_tier))

    def run_ended(self, status: str) -> None:
        """Count a server run that ended in ``status`` (an ExecutionStatus value)."""
        if status == "completed":
            self.executions_completed.inc()
        elif status in ("failed", "gate_failed"):
            self.executions_failed.inc()

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
        # A scrape reads the store (active licenses): not on the event loop.
        body = await asyncio.get_running_loop().run_in_executor(None, render, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _ActiveLicenses(Collector):
    """``connectsw_licenses_active{tier}``: licenses that are active and unexpired."""

    def __init__(self, active_by_tier: Callable[[], dict[str, int]]) -> None:
        self.active_by_tier = active_by_tier

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "connectsw_licenses_active", "Active, unexpired licenses by tier.", labels=["tier"]
        )
        for tier, count in sorted(self.active_by_tier().items()):
            gauge.add_metric([tier], count)
        yield gauge
