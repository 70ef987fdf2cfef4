"""HTTP search service over an index directory (FastAPI; extra ``serve``).

Endpoints (JSON unless stated):

- ``GET /search?q=TEXT&k=10&mode=fused`` -> ``{"query", "hits": [{rank, score, key, caption}]}``
- ``POST /search`` with ``{"queries": [...], "k": 10, "mode": "fused"}`` ->
  ``{"results": [{"query", "hits"}]}``: all queries encoded in one model pass
  (at most ``max_queries`` per request).
- ``GET /health`` -> ``{"status": "ok", "items", "task"}``.
- ``GET /metrics`` -> request, query and error counts and latency (mean, p50,
  p95 over the last 1,000 requests), kept on the app (no global state).
- ``GET /`` -> a search page (``static/index.html``).

``k`` (default 10, or ``max_k`` if smaller) must be in ``1..max_k`` and a query must not be empty: anything else is a
``422`` naming the field and what was expected. Model calls are serialized by a
lock, so concurrent requests do not oversubscribe the CPU threads.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

STATIC_DIR = Path(__file__).parent / "static"


class TextSearcher(Protocol):
    """What the service needs from :class:`~retrievalkit.pipeline.search_engine.SearchEngine`."""

    def search_text(
        self, queries: list[str], k: int = 10, mode: str = "fused"
    ) -> list[list[Any]]: ...


class BatchRequest(BaseModel):
    queries: list[str] = Field(min_length=1)
    k: int | None = None  # None: the app's default (10, or max_k if smaller)
    mode: Literal["fused", "image"] = "fused"


class ServiceStats:
    """Counts and recent latencies of one app instance."""

    def __init__(self, window: int = 1000) -> None:
        self.requests = 0
        self.queries = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=window)
        self.lock = threading.Lock()

    def record(self, num_queries: int, seconds: float) -> None:
        with self.lock:
            self.requests += 1
            self.queries += num_queries
            self.latencies_ms.append(seconds * 1000.0)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            latencies = sorted(self.latencies_ms)
        latency: dict[str, float] = {}
        if latencies:
            latency = {
                "mean": statistics.fmean(latencies),
                "p50": latencies[len(latencies) // 2],
                "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            }
        return {
            "requests": self.requests,
            "queries": self.queries,
            "errors": self.errors,
            "latency_ms": latency,
        }


def create_app(
    engine: TextSearcher,
    max_k: int = 100,
    max_queries: int = 64,
    items: int | None = None,
    task: str = "cross_modal",
) -> FastAPI:
    """A FastAPI app serving ``engine`` (see the module docstring for the endpoints)."""
    app = FastAPI(title="retrievalkit search", version="1")
    default_k = min(10, max_k)
    stats = ServiceStats()
    model_lock = threading.Lock()
    app.state.stats = stats

    def run_search(queries: list[str], k: int, mode: str) -> list[dict[str, Any]]:
        for position, query in enumerate(queries):
            if not query.strip():
                raise HTTPException(422, f"queries[{position}]: empty query (expected some text)")
        if not 1 <= k <= max_k:
            raise HTTPException(422, f"k: expected an integer in 1..{max_k}, got {k}")
        if len(queries) > max_queries:
            raise HTTPException(
                422, f"queries: at most {max_queries} per request, got {len(queries)}"
            )
        start = time.perf_counter()
        try:
            with model_lock:
                results = engine.search_text(queries, k, mode=mode)
        except ValueError as err:  # e.g. a metric-learning index has no text tower
            with stats.lock:
                stats.errors += 1
            raise HTTPException(400, str(err)) from err
        stats.record(len(queries), time.perf_counter() - start)
        return [
            {"query": query, "hits": [hit.to_dict() for hit in hits]}
            for query, hits in zip(queries, results, strict=True)
        ]

    @app.get("/search")
    def search(
        q: str = Query(..., description="text query"),
        k: int = Query(default_k, description=f"number of hits, 1..{max_k}"),
        mode: Literal["fused", "image"] = "fused",
    ) -> dict[str, Any]:
        return run_search([q], k, mode)[0]

    @app.post("/search")
    def search_batch(request: BatchRequest) -> dict[str, Any]:
        k = default_k if request.k is None else request.k
        return {"results": run_search(request.queries, k, request.mode)}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "items": items, "task": task}

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        return stats.snapshot()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    return app


def app_for_index(directory: str | Path, device: str = "cpu", **options: Any) -> FastAPI:
    """Open an index directory (``retrievalkit index build``) and serve it."""
    from retrievalkit.pipeline.search_engine import SearchEngine

    engine = SearchEngine(directory, device=device)
    return create_app(
        engine,
        items=len(engine.images),
        task="cross_modal" if engine.model.has_text else "metric",
        **options,
    )
