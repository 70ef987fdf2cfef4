"""HTTP service: batching, limits with clear errors, metrics, page (engine faked
here; the end-to-end test serves a real index)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from retrievalkit.search import SearchHit
from retrievalkit.serve.app import create_app
from retrievalkit.serve.metrics import ServiceMetrics
from retrievalkit.serve.runner import BatchingRunner


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


@pytest.fixture(params=["lock", "batch"])
def served(request):
    engine = RecordingEngine()
    app = create_app(
        engine, max_k=5, max_queries=3, items=42, max_query_chars=40, max_body_bytes=4096,
        max_url_bytes=2048, model_access=request.param,
    )  # fmt: skip
    with TestClient(app) as client:  # runs the lifespan: the batcher stops at the end
        yield engine, client


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
    "request_args, loc, msg",
    [
        ({"params": {"q": "x", "k": 6}}, ["query", "k"], "less than or equal to 5"),
        ({"params": {"q": "x", "k": 0}}, ["query", "k"], "greater than or equal to 1"),
        ({"params": {"q": "x", "k": "ten"}}, ["query", "k"], "valid integer"),
        ({"params": {"q": "   "}}, ["query", "q"], "expected some text, not only spaces"),
        ({"json": {"queries": ["a", " "]}}, ["body", "queries", 1], "not only spaces"),
        ({"params": {"q": ""}}, ["query", "q"], "at least 1 character"),
        ({"params": {"q": "x" * 41}}, ["query", "q"], "at most 40 characters"),
        ({"params": {"k": 3}}, ["query", "q"], "Field required"),
        ({"params": {"q": "x", "mode": "captions"}}, ["query", "mode"], "'fused' or 'image'"),
        ({"json": {"queries": ["a", "b", "c", "d"]}}, ["body", "queries"], "at most 3 items"),
        ({"json": {"queries": []}}, ["body", "queries"], "at least 1 item"),
        ({"json": {"queries": ["a", ""]}}, ["body", "queries", 1], "at least 1 character"),
        ({"json": {"queries": ["a"], "k": 9}}, ["body", "k"], "less than or equal to 5"),
        ({"json": {"queries": ["a"], "top": 2}}, ["body", "top"], "Extra inputs"),
        ({"json": {"queries": "abc"}}, ["body", "queries"], "valid list"),
        ({"json": [1, 2]}, ["body"], "valid dictionary"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}},
         ["body", 1], "JSON decode error"),
    ],
)  # fmt: skip
def test_bad_requests_have_one_shape_and_never_reach_the_model(served, request_args, loc, msg):
    engine, client = served
    method = client.get if "params" in request_args else client.post
    response = method("/search", **request_args)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list) and all(set(d) == {"loc", "msg", "type"} for d in detail)
    assert detail[0]["loc"] == loc and msg in detail[0]["msg"]
    assert engine.calls == []  # rejected before the model runs


def test_oversized_requests_are_refused_before_parsing(served):
    engine, client = served
    big_body = client.post(
        "/search", content=b'{"queries": ["' + b"x" * 5000 + b'"]}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert big_body.status_code == 413
    assert big_body.json()["detail"] == [
        {"loc": ["body"], "msg": "body of 5017 bytes; at most 4096 bytes accepted",
         "type": "body_too_large"}
    ]  # fmt: skip

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    chunked = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["detail"][0]["type"] == "body_too_large"
    long_url = client.get("/search", params={"q": "x" * 3000})
    assert long_url.status_code == 414 and long_url.json()["detail"][0]["loc"] == ["url"]
    assert engine.calls == []


def test_unknown_route_and_method_use_the_same_shape(served):
    _, client = served
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": [{"loc": [], "msg": "Not Found", "type": "http_404"}]}
    wrong = client.delete("/search")
    assert wrong.status_code == 405 and wrong.json()["detail"][0]["type"] == "http_405"


def test_engine_errors_are_400_and_counted(served):
    _, client = served
    response = client.get("/search", params={"q": "boom"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": [
            {"loc": [], "msg": "this index was built from a metric-learning model: no text "
             "queries", "type": "bad_request"}
        ]
    }  # fmt: skip
    assert client.get("/metrics.json").json()["errors"] == 1


def test_limits_health_and_page(served):
    _, client = served
    assert client.get("/health").json() == {"status": "ok", "items": 42, "task": "cross_modal"}
    assert client.get("/limits").json() == {
        "max_k": 5, "default_k": 5, "max_queries": 3, "max_query_chars": 40,
        "max_body_bytes": 4096, "max_url_bytes": 2048,
    }  # fmt: skip
    page = client.get("/")
    assert page.status_code == 200 and 'fetch("/limits")' in page.text
    assert 'max="100"' not in page.text or "k.max = limits.max_k" in page.text


def test_prometheus_metrics(served):
    from prometheus_client.parser import text_string_to_metric_families

    _, client = served
    client.get("/search", params={"q": "a"})
    client.post("/search", json={"queries": ["b", "c"]})
    client.get("/search", params={"q": "a", "k": 99})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    ok = ("endpoint", "/search"), ("method", "GET"), ("status", "200")
    assert samples[("retrievalkit_requests_total", ok)] == 1
    assert samples[("retrievalkit_errors_total", (("endpoint", "/search"), ("status", "422")))] == 1
    assert samples[("retrievalkit_queries_total", ())] == 3
    assert samples[("retrievalkit_model_batch_queries_count", ())] == 2
    assert samples[("retrievalkit_request_seconds_count", (("endpoint", "/search"),))] == 3
    assert samples[("retrievalkit_index_items", ())] == 42
    as_json = client.get("/metrics.json").json()
    assert as_json["requests"] == 4 and as_json["queries"] == 3 and as_json["errors"] == 1
    assert 0 <= as_json["latency_ms"]["p50"] <= as_json["latency_ms"]["p95"]
    client.get("/a/path/nobody/knows")
    assert 'endpoint="other"' in client.get("/metrics").text  # bounded label set


class SlowEngine(RecordingEngine):
    """A model pass that takes a while, so concurrent requests queue up."""

    def search_text(self, queries, k=10, mode="fused"):
        time.sleep(0.05)
        return super().search_text(queries, k, mode)


def test_micro_batching_gives_each_request_its_own_hits():
    engine = SlowEngine()
    runner = BatchingRunner(engine, ServiceMetrics(set()))
    jobs = [([f"q{i}", f"r{i}"] if i % 3 == 0 else [f"q{i}"], 2 + i % 2) for i in range(24)]
    try:
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(runner.search, queries, k, "fused") for queries, k in jobs]
            results = [future.result(timeout=60) for future in futures]
        failing = pool_error(runner)  # the engine's error reaches the request (+1 query)
    finally:
        runner.close()
    for (queries, k), result in zip(jobs, results, strict=True):
        assert [[hit.key for hit in hits] for hits in result] == [
            [f"{q}#{r}" for r in range(1, k + 1)] for q in queries
        ]
    assert len(engine.calls) < len(jobs)  # some passes encoded several requests
    assert sum(len(call[0]) for call in engine.calls) == sum(len(q) for q, _ in jobs) + 1
    assert isinstance(failing, ValueError) and "metric-learning" in str(failing)


def pool_error(runner):
    try:
        runner.search(["boom"], 2, "fused")
    except ValueError as err:
        return err
    return None


def test_pictures_are_served_from_the_index_directory_only(tmp_path):
    from PIL import Image

    (tmp_path / "pictures").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "pictures" / "000001.png")
    (tmp_path / "secret.txt").write_text("not a picture")
    with TestClient(create_app(RecordingEngine(), pictures=tmp_path / "pictures")) as client:
        response = client.get("/pictures/000001.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == (tmp_path / "pictures" / "000001.png").read_bytes()
        assert client.get("/pictures/000002.png").status_code == 404
        for bad in ("..%2Fsecret.txt", "secret.txt", "1.png"):
            assert client.get(f"/pictures/{bad}").status_code in (404, 422), bad
    with TestClient(create_app(RecordingEngine())) as client:  # an index without pictures
        assert client.get("/pictures/000001.png").status_code == 404
