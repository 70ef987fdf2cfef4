"""HTTP service: batching, limits with clear errors, metrics, page (engine faked
here; the end-to-end test serves a real index)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from retrievalkit.pipeline.search_engine import SearchHit
from retrievalkit.serve.app import create_app


class RecordingEngine:
    """Returns ``k`` hits per query whose keys spell the query; records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int, str]] = []

    def search_text(self, queries, k=10, mode="fused"):
        self.calls.append((list(queries), k, mode))
        if queries and queries[0] == "boom":
            raise ValueError("this index was built from a metric-learning model: no text queries")
        return [
            [SearchHit(r, 1.0 - r / 10, f"{q}#{r}", f"caption of {q}") for r in range(1, k + 1)]
            for q in queries
        ]


@pytest.fixture()
def served():
    engine = RecordingEngine()
    client = TestClient(create_app(engine, max_k=5, max_queries=3, items=42))
    return engine, client


def test_get_search_returns_ranked_hits(served):
    engine, client = served
    response = client.get("/search", params={"q": "sad rainy day", "k": 2, "mode": "image"})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "sad rainy day"
    assert [h["rank"] for h in body["hits"]] == [1, 2]
    assert body["hits"][0] == {
        "rank": 1,
        "score": 0.9,
        "key": "sad rainy day#1",
        "caption": "caption of sad rainy day",
    }
    assert engine.calls == [(["sad rainy day"], 2, "image")]


def test_post_search_encodes_all_queries_in_one_call(served):
    engine, client = served
    response = client.post("/search", json={"queries": ["omg", "yay", "brb"], "k": 1})
    assert response.status_code == 200
    assert [r["query"] for r in response.json()["results"]] == ["omg", "yay", "brb"]
    assert engine.calls == [(["omg", "yay", "brb"], 1, "fused")]


@pytest.mark.parametrize(
    "request_args, field",
    [
        ({"params": {"q": "x", "k": 6}}, "k: expected an integer in 1..5, got 6"),
        ({"params": {"q": "x", "k": 0}}, "k: expected an integer in 1..5"),
        ({"params": {"q": "   "}}, "queries[0]: empty query"),
        ({"json": {"queries": ["a", "b", "c", "d"]}}, "queries: at most 3 per request, got 4"),
        ({"json": {"queries": ["a", ""]}}, "queries[1]: empty query"),
    ],
)
def test_bad_requests_name_the_field(served, request_args, field):
    engine, client = served
    method = client.post if "json" in request_args else client.get
    response = method("/search", **request_args)
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert engine.calls == []  # rejected before the model runs


def test_engine_errors_are_400_and_counted(served):
    _, client = served
    response = client.get("/search", params={"q": "boom"})
    assert response.status_code == 400 and "metric-learning" in response.json()["detail"]
    assert client.get("/metrics").json()["errors"] == 1


def test_health_metrics_and_page(served):
    _, client = served
    assert client.get("/health").json() == {"status": "ok", "items": 42, "task": "cross_modal"}
    client.get("/search", params={"q": "a"})
    client.post("/search", json={"queries": ["b", "c"]})
    metrics = client.get("/metrics").json()
    assert metrics["requests"] == 2 and metrics["queries"] == 3 and metrics["errors"] == 0
    assert 0 <= metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p95"]
    page = client.get("/")
    assert page.status_code == 200 and 'fetch("/search?"' in page.text
