"""Short mode of the service load test (full numbers: BENCHMARKS.md): a real
server on loopback, 1 and 8 concurrent clients, both model access modes:
every request answered with k hits, no errors, memory flat."""

from __future__ import annotations

import pytest
from loadtest import rss_mib, run_level

from tests.reliability.served import serving

QUERIES = ["a happy face", "red heart", "cat", "rain", "party popper", "thumbs up", "sad"]


@pytest.mark.parametrize("access", ["lock", "batch"])
def test_bounded_load_has_no_errors_and_flat_memory(served_index, access):
    with serving(served_index, "--model-access", access) as (url, process):
        run_level(url, clients=4, requests=40, duration=60, queries=QUERIES)  # warm-up
        before = rss_mib(process.pid)
        results = [
            run_level(url, clients, requests=80, duration=60, queries=QUERIES, k=5)
            for clients in (1, 8)
        ]
        after = rss_mib(process.pid)
    for result in results:
        assert result.errors == 0 and result.requests == 80, result.error_kinds
        assert result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert after - before < 30, f"RSS grew from {before:.0f} to {after:.0f} MiB"
