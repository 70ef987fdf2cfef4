"""HTTP search service over an index directory (FastAPI; extra ``serve``).

Endpoints (JSON unless stated):

- ``GET /search?q=TEXT&k=10&mode=fused`` -> ``{"query", "hits": [{rank, score, key, caption}]}``
- ``POST /search`` with ``{"queries": [...], "k": 10, "mode": "fused"}`` ->
  ``{"results": [{"query", "hits"}]}``: all queries encoded in one model pass.
- ``GET /limits`` -> ``{"max_k", "default_k", "max_queries", "max_query_chars",
  "max_body_bytes", "max_url_bytes"}`` (the page reads its bounds here).
- ``GET /health`` -> ``{"status": "ok", "items", "task"}``.
- ``GET /metrics`` -> Prometheus text (see :mod:`retrievalkit.serve.metrics`);
  ``GET /metrics.json`` -> counts and recent ``/search`` latency percentiles.
- ``GET /pictures/NNNNNN.png`` -> an indexed image as the index keeps it (a hit's
  ``metadata.picture``; 404 for any other name or when the index has none).
- ``GET /`` -> a search page (``static/index.html``): each hit's own picture (the
  style that matched), caption and score.

Every request is checked before the model runs, by pydantic models and
``Query`` constraints: a query is 1..``max_query_chars`` characters with some
non-space text, ``k`` is in ``1..max_k``, a POST holds 1..``max_queries``
queries and no unknown field. Bodies over ``max_body_bytes`` get ``413``, URLs
over ``max_url_bytes`` ``414``. Every error, whatever its status, has one shape:
``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`` (the input is
never echoed back). Model calls are serialized (:mod:`retrievalkit.serve.runner`).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrievalkit.errors import UserError
from retrievalkit.serve.limits import RequestLimits, error_body
from retrievalkit.serve.metrics import PROMETHEUS_CONTENT_TYPE, MetricsMiddleware, ServiceMetrics
from retrievalkit.serve.runner import RUNNERS, TextSearcher

STATIC_DIR = Path(__file__).parent / "static"
ROUTES = {"/search", "/limits", "/health", "/metrics", "/metrics.json", "/"}
PICTURE_NAME = r"^[0-9]{6}\.png$"  # the names search.index_dir.write_pictures gives


def _some_text(text: str) -> str:
    """A query must hold some text, not only spaces."""
    if not text.strip():
        raise ValueError("expected some text, not only spaces")
    return text


Mode = Literal["fused", "image"]


def _batch_request_model(max_k: int, default_k: int, max_queries: int, max_chars: int) -> Any:
    """The POST /search body model with this app's bounds."""
    text = Annotated[
        str, StringConstraints(min_length=1, max_length=max_chars), AfterValidator(_some_text)
    ]
    return create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid"),
        queries=(list[text], Field(min_length=1, max_length=max_queries)),
        k=(int, Field(default_k, ge=1, le=max_k)),
        mode=(Mode, "fused"),
    )


def _install_error_shape(app: FastAPI) -> None:
    """Validation errors and HTTP errors answer ``{"detail": [{loc, msg, type}]}``."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        body = error_body([], str(err.detail), f"http_{err.status_code}")
        return JSONResponse(body, status_code=err.status_code, headers=err.headers)


def create_app(
    engine: TextSearcher,
    max_k: int = 100,
    max_queries: int = 64,
    items: int | None = None,
    task: str = "cross_modal",
    max_query_chars: int = 1000,
    max_body_bytes: int = 65536,
    max_url_bytes: int = 8192,
    model_access: Literal["lock", "batch"] = "lock",
    pictures: Path | None = None,
) -> FastAPI:
    """A FastAPI app serving ``engine`` (see the module docstring for the endpoints).

    ``pictures``: the index directory's ``pictures/`` (the page's images), if any.

    ``model_access``: ``"lock"`` runs one request's pass at a time, ``"batch"``
    encodes the requests waiting for the model together (micro-batching).
    """
    metrics = ServiceMetrics(ROUTES)
    if items is not None:
        metrics.items.set(items)
    runner = RUNNERS[model_access](engine, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()

    app = FastAPI(title="retrievalkit search", version="1", lifespan=lifespan)
    default_k = min(10, max_k)
    app.state.metrics = metrics
    app.state.runner = runner
    limits = {
        "max_k": max_k,
        "default_k": default_k,
        "max_queries": max_queries,
        "max_query_chars": max_query_chars,
        "max_body_bytes": max_body_bytes,
        "max_url_bytes": max_url_bytes,
    }
    batch_request = _batch_request_model(max_k, default_k, max_queries, max_query_chars)
    _install_error_shape(app)

    def run_search(queries: list[str], k: int, mode: str) -> list[dict[str, Any]]:
        try:
            results = runner.search(queries, k, mode)
        except (UserError, ValueError) as err:  # e.g. a metric-learning index: no text tower
            return JSONResponse(error_body([], str(err), "bad_request"), status_code=400)
        return [
            {"query": query, "hits": [hit.to_dict() for hit in hits]}
            for query, hits in zip(queries, results, strict=True)
        ]

    @app.get("/search")
    def search(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=max_query_chars,
                description=f"text query, 1..{max_query_chars} characters",
            ),
            AfterValidator(_some_text),
        ],
        k: int = Query(default_k, ge=1, le=max_k, description=f"number of hits, 1..{max_k}"),
        mode: Annotated[Mode, Query(description="fused: image + captions; image: only")] = "fused",
    ) -> Any:  # fmt: skip
        results = run_search([q], k, mode)
        return results if isinstance(results, Response) else results[0]

    @app.post("/search")
    def search_batch(request: batch_request) -> Any:  # type: ignore[valid-type]
        results = run_search(request.queries, request.k, request.mode)
        return results if isinstance(results, Response) else {"results": results}

    @app.get("/limits")
    def get_limits() -> dict[str, int]:
        return limits

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "items": items, "task": task}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.prometheus_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/metrics.json")
    def json_metrics() -> dict[str, Any]:
        return metrics.snapshot()

    @app.get("/pictures/{name}")
    def picture(name: Annotated[str, Path_(pattern=PICTURE_NAME)]) -> Response:
        path = pictures / name if pictures is not None else None
        if path is None or not path.is_file():
            return JSONResponse(error_body(["path", "name"], "no such picture", "http_404"), 404)
        return FileResponse(path, media_type="image/png")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes, max_url_bytes=max_url_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_for_index(directory: str | Path, device: str = "cpu", **options: Any) -> FastAPI:
    """Open an index directory (``retrievalkit index build``) and serve it."""
    from retrievalkit.search import SearchEngine
    from retrievalkit.search.index_dir import PICTURES

    engine = SearchEngine(directory, device=device)
    pictures = Path(directory) / PICTURES
    return create_app(
        engine,
        items=len(engine.images),
        task="cross_modal" if engine.model.has_text else "metric",
        pictures=pictures if pictures.is_dir() else None,
        **options,
    )
