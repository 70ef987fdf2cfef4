"""How requests reach the model: one at a time behind a lock.

The model is not run by two threads at once: concurrent passes only
oversubscribe the CPU threads torch already uses. :class:`LockedRunner` records
how long each request waited for the lock and how long its pass took.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from retrievalkit.serve.metrics import ServiceMetrics


class TextSearcher(Protocol):
    """What the service needs from :class:`~retrievalkit.pipeline.search_engine.SearchEngine`."""

    def search_text(
        self, queries: list[str], k: int = 10, mode: str = "fused"
    ) -> list[list[Any]]: ...


class LockedRunner:
    """Runs ``engine.search_text`` for one request at a time."""

    def __init__(self, engine: TextSearcher, metrics: ServiceMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._lock = threading.Lock()

    def search(self, queries: list[str], k: int, mode: str) -> list[list[Any]]:
        """Hits per query (``len(queries)`` lists); the engine's errors pass through."""
        asked = time.perf_counter()
        with self._lock:
            start = time.perf_counter()
            results = self.engine.search_text(queries, k, mode=mode)
            done = time.perf_counter()
        self.metrics.record_model_pass(len(queries), start - asked, done - start)
        return results

    def close(self) -> None:
        pass
