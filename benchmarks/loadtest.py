"""A bounded load generator for the search service (asyncio + httpx).

``run_level(url, clients, requests, duration)`` keeps ``clients`` concurrent
clients sending ``GET /search`` one request after another until ``requests``
answers arrived or ``duration`` seconds passed, whichever comes first, and
returns throughput, latency percentiles and error counts. Used by
``benchmarks/serve_load.py`` (numbers in BENCHMARKS.md) and, in a short mode,
by ``tests/reliability/test_load.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx


@dataclass(frozen=True)
class LevelResult:
    """One load level: ``clients`` concurrent clients, latencies in milliseconds."""

    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    error_kinds: dict[str, int]  # status code or exception name -> count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def _level(
    url: str, clients: int, requests: int, duration: float, queries: list[str], k: int
) -> LevelResult:
    latencies: list[float] = []
    errors = 0
    kinds: Counter[str] = Counter()
    sent = 0
    deadline = time.perf_counter() + duration
    query_cycle = cycle(queries)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            start = time.perf_counter()
            try:
                response = await http.get("/search", params={"q": next(query_cycle), "k": k})
                ok = response.status_code == 200 and len(response.json()["hits"]) == k
                kind = f"status {response.status_code}" if not ok else ""
            except httpx.HTTPError as err:
                ok, kind = False, f"{type(err).__name__}: {err}"[:120]
            latencies.append((time.perf_counter() - start) * 1000.0)
            errors += not ok
            if not ok:
                kinds[kind] += 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    latencies.sort()
    return LevelResult(
        clients=clients,
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        requests_per_second=len(latencies) / seconds,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else float("nan"),
        error_kinds=dict(kinds),
    )


def run_level(
    url: str,
    clients: int,
    requests: int,
    duration: float,
    queries: list[str],
    k: int = 10,
) -> LevelResult:
    """Run one bounded level against the service at ``url`` (e.g. http://127.0.0.1:8000)."""
    if clients < 1 or requests < 1 or duration <= 0 or not queries:
        raise ValueError("clients, requests, duration and queries must be positive/non-empty")
    return asyncio.run(_level(url, clients, requests, duration, queries, k))


def wait_until_healthy(url: str, timeout: float = 120.0) -> None:
    """Poll ``GET /health`` until it answers 200 (the server loads its model first)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy within {timeout:.0f} s")


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux ``/proc``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")
