"""Service metrics: Prometheus text (prometheus-client, one registry per app) and a
small JSON view, both fed by one ASGI middleware.

Prometheus series (``GET /metrics``):

- ``retrievalkit_requests_total{endpoint, method, status}``
- ``retrievalkit_errors_total{endpoint, status}``: responses with status >= 400
- ``retrievalkit_request_seconds{endpoint}``: latency histogram of whole requests
- ``retrievalkit_queries_total``: text queries encoded
- ``retrievalkit_model_seconds``: time in one model pass (histogram)
- ``retrievalkit_model_wait_seconds``: time a request waited for the model
  (lock or micro-batch queue), i.e. what serializing the model costs it
- ``retrievalkit_model_batch_queries``: queries per model pass
- ``retrievalkit_index_items``: items in the index

``endpoint`` is the route path for the service's own routes and ``other`` for
anything else, so unknown URLs cannot grow the label set.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "MetricsMiddleware", "ServiceMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The metrics of one app instance (no global registry)."""

    def __init__(self, routes: set[str], window: int = 1000) -> None:
        self.routes = routes
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "retrievalkit_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.errors = Counter(
            "retrievalkit_errors",
            "responses with status >= 400",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "retrievalkit_request_seconds", "request latency", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queries = Counter("retrievalkit_queries", "text queries encoded", registry=r)
        self.model_seconds = Histogram(
            "retrievalkit_model_seconds", "one model pass", buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_wait = Histogram(
            "retrievalkit_model_wait_seconds", "wait for the model (lock or batch queue)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_queries = Histogram(
            "retrievalkit_model_batch_queries", "queries per model pass",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.items = Gauge("retrievalkit_index_items", "items in the index", registry=r)
        self._lock = threading.Lock()
        self._latencies_ms: deque[float] = deque(maxlen=window)
        self._counts = {"requests": 0, "errors": 0, "queries": 0}

    def endpoint(self, path: str) -> str:
        return path if path in self.routes else "other"

    def record_request(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = self.endpoint(path)
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        with self._lock:
            self._counts["requests"] += 1
            if status >= 400:
                self._counts["errors"] += 1
            if endpoint == "/search":
                self._latencies_ms.append(seconds * 1000.0)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def record_model_pass(self, num_queries: int, wait: float, seconds: float) -> None:
        self.queries.inc(num_queries)
        self.model_wait.observe(wait)
        self.model_seconds.observe(seconds)
        self.batch_queries.observe(num_queries)
        with self._lock:
            self._counts["queries"] += num_queries

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """JSON view: counts and /search latency (ms) over the last ``window`` requests."""
        with self._lock:
            latencies = sorted(self._latencies_ms)
            counts = dict(self._counts)
        latency: dict[str, float] = {}
        if latencies:

            def at(q: float) -> float:
                return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

            latency = {"mean": statistics.fmean(latencies), "p50": at(0.5), "p95": at(0.95),
                       "p99": at(0.99)}  # fmt: skip
        return {**counts, "latency_ms": latency}


class MetricsMiddleware:
    """Pure ASGI middleware: records status and latency of every HTTP request."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.record_request(
                scope["path"], scope["method"], status, time.perf_counter() - start
            )
