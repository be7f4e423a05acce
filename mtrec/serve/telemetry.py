"""Prometheus metrics of one app (its own registry: nothing global at import)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mtrec_requests", "HTTP requests", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "mtrec_request_seconds", "Server-side request latency", ["route"],
            buckets=(.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, 1.0),
            registry=self.registry)


class Measure:
    """ASGI middleware: count requests by route template (the path under /v1) and status,
    and time them (also sent back as ``Server-Timing: app;dur=<ms>`` up to the headers)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ms = (time.perf_counter() - started) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.telemetry.requests.labels(name, str(status)).inc()
            self.telemetry.latency.labels(name).observe(time.perf_counter() - started)
