"""Fuzz the HTTP service from its own OpenAPI schema (schemathesis, in-process
ASGI calls: no network): no 500, and every error answers in the one shape."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from retrievalkit.serve.app import app_for_index  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(served_index):
    app = app_for_index(served_index, max_k=20, max_queries=8, max_query_chars=200)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _check(case, statuses: list[int]) -> None:
    response = case.call()
    statuses.append(response.status_code)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, list) and detail
        assert all(set(item) == {"loc", "msg", "type"} for item in detail), detail


def test_no_server_error_and_one_error_shape(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    statuses: list[int] = []
    assert {op.path for op in operations} >= {"/search", "/limits", "/metrics"}
    for operation in operations:
        # valid and invalid requests (wrong types, out-of-range k, odd unicode, ...)
        searches = operation.path == "/search"  # the others take no input to break
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * searches
        for mode in modes:
            examples = 40 if searches else 3

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,  # the same cases every run
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case) -> None:
                _check(case, statuses)

            fuzz()
    assert len(statuses) >= 100 and 200 in statuses and 422 in statuses
