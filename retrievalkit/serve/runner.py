"""How requests reach the model: one pass at a time.

The model is not run by two threads at once: concurrent passes only
oversubscribe the CPU threads torch already uses. :class:`LockedRunner` runs
each request's pass behind a lock; :class:`BatchingRunner` encodes the requests
that wait for the model together in one pass (BENCHMARKS.md compares them).
Both record the wait for the model and the pass time in the app's metrics.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from retrievalkit.serve.metrics import ServiceMetrics


class TextSearcher(Protocol):
    """What the service needs from :class:`~retrievalkit.search.engine.SearchEngine`."""

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


@dataclass
class _Job:
    queries: list[str]
    k: int
    mode: str
    asked: float
    done: threading.Event = field(default_factory=threading.Event)
    result: list[list[Any]] | None = None
    error: BaseException | None = None


class BatchingRunner:
    """Micro-batching: requests waiting for the model are encoded in one pass.

    One worker thread owns the model. While it runs a pass, new requests queue
    up; the next pass takes every queued request (up to ``max_batch`` queries)
    and groups them by ``(k, mode)``, so each group is one ``search_text`` call.
    No request waits for a batch to fill: at low load a pass holds one request.
    """

    def __init__(self, engine: TextSearcher, metrics: ServiceMetrics, max_batch: int = 256):
        self.engine = engine
        self.metrics = metrics
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="model-batcher", daemon=True)
        self._worker.start()

    def search(self, queries: list[str], k: int, mode: str) -> list[list[Any]]:
        """Hits per query, as :meth:`LockedRunner.search`."""
        job = _Job(list(queries), k, mode, time.perf_counter())
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _take_batch(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, size = [first], len(first.queries)
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.queries)
        return jobs, False

    def _serve(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._take_batch(first)
            groups: dict[tuple[int, str], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.k, job.mode), []).append(job)
            for (k, mode), group in groups.items():
                self._run_group(group, k, mode)

    def _run_group(self, group: list[_Job], k: int, mode: str) -> None:
        queries = [q for job in group for q in job.queries]
        start = time.perf_counter()
        try:
            results = self.engine.search_text(queries, k, mode=mode)
        except BaseException as err:  # handed to every waiting request
            for job in group:
                job.error = err
                job.done.set()
            return
        done = time.perf_counter()
        self.metrics.record_model_pass(
            len(queries), statistics.fmean(start - job.asked for job in group), done - start
        )
        offset = 0
        for job in group:
            job.result = results[offset : offset + len(job.queries)]
            offset += len(job.queries)
            job.done.set()


RUNNERS = {"lock": LockedRunner, "batch": BatchingRunner}
