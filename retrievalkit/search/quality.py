"""Search quality on a typed query set: the trained model's rankings against BM25.

Rankings (hit@5 and MRR@5 per query kind, ``retrievalkit.eval.query_set``):

- ``image``: the query's embedding against every image embedding, one hit per
  emoji (its best style): the trained image tower alone.
- ``fused``: ``w * image + (1 - w) * caption`` similarity (hybrid search).
- ``captions``: the caption embeddings alone (``w = 0``): the frozen text tower
  matching the query against each emoji's CLDR captions, no trained image tower.
- ``bm25``: keyword search over each emoji's CLDR captions joined.

"paraphrase" queries share no word with the CLDR text of any target, so BM25
scores 0 on them by construction; "literal" ones share at least one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievalkit.eval.query_set import Query, hit_rate_at_k, load_query_set

K = 5
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def emoji_documents(splits: dict[str, Any]) -> tuple[list[str], list[str]]:
    """One BM25 document per key: its distinct captions joined. Returns (docs, keys)."""
    texts: dict[str, dict[str, None]] = {}
    for split in splits.values():
        for caption, image in zip(split.captions, split.caption_image, strict=True):
            texts.setdefault(split.image_keys[int(image)], {})[caption] = None
    keys = list(texts)
    return [" ; ".join(texts[key]) for key in keys], keys


def _scores(results: dict[str, list[str]], queries: Sequence[Query]) -> dict[str, Any]:
    return hit_rate_at_k(lambda query, k: results[query][:k], queries, k=K)


def model_rankings(
    engine: Any, queries: Sequence[Query], mode: str, image_weight: float = 0.0
) -> dict[str, list[str]]:
    """``{query: top-K keys}`` of the engine (all queries in one batch)."""
    texts = [q.text for q in queries]
    hits = engine.search_text(texts, K, mode=mode, image_weight=image_weight)
    return {text: [h.key for h in row] for text, row in zip(texts, hits, strict=True)}


def compare_rankings(
    engine: Any,
    splits: dict[str, Any],
    query_path: str | Path,
    part: str,
    image_weight: float,
) -> dict[str, Any]:
    """Hit@5 / MRR@5 per kind of the four rankings on one part (dev/test) of the set."""
    from retrievalkit.index.bm25 import BM25Index

    queries = load_query_set(query_path, part=part)
    docs, keys = emoji_documents(splits)
    bm25 = BM25Index(docs, keys)
    bm25_results = {q.text: [h.key for h in bm25.search(q.text, K)] for q in queries}
    return {
        "queries": str(query_path),
        "part": part,
        "num_queries": len(queries),
        "image_weight": image_weight,
        "image": _scores(model_rankings(engine, queries, "image"), queries),
        "fused": _scores(model_rankings(engine, queries, "fused", image_weight), queries),
        "captions": _scores(model_rankings(engine, queries, "fused", 0.0), queries),
        "bm25": _scores(bm25_results, queries),
    }


def weight_sweep(
    engine: Any, query_path: str | Path, part: str = "dev", weights: Sequence[float] = WEIGHT_GRID
) -> dict[str, dict[str, float]]:
    """Fused hit@5 per kind for each image weight, on one part (choose on ``dev``)."""
    queries = load_query_set(query_path, part=part)
    out = {}
    for weight in weights:
        scores = _scores(model_rankings(engine, queries, "fused", weight), queries)
        out[f"{weight:.1f}"] = {kind: row["hit_rate"] for kind, row in scores.items()}
    return out


def dev_best_weight(sweep: dict[str, dict[str, float]]) -> float:
    """The weight of a dev sweep with the best hit@5 over all queries (ties: the smaller)."""
    return float(max(sweep, key=lambda w: (sweep[w]["all"], -float(w))))


def score_search(
    engine: Any, splits: dict[str, Any], query_path: str | Path, weight: float | None = None
) -> dict[str, Any]:
    """The search-quality entries of a run's ``metrics.json``: the fusion weight sweep
    and the four rankings on the dev part, and the rankings on the test part.

    ``weight``: the fused ranking's image weight; None picks it on the dev sweep
    (:func:`dev_best_weight`), never on the test part.
    """
    sweep = weight_sweep(engine, query_path, "dev")
    chosen = dev_best_weight(sweep) if weight is None else weight
    return {
        "search_quality_dev": compare_rankings(engine, splits, query_path, "dev", chosen),
        "fusion_weight_sweep_dev": sweep,
        "search_quality": compare_rankings(engine, splits, query_path, "test", chosen),
    }
