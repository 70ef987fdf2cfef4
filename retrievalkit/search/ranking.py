"""Ranking search results: hits, one hit per key, and image + caption fusion.

Images sharing a key (an emoji in several styles) are one result: a key is ranked
at its best-scoring item. Fused text search ranks a key by
``w * s_image + (1 - w) * s_caption`` (:func:`fuse`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

DEFAULT_IMAGE_WEIGHT = 0.4  # fused text search; see SearchEngine.search_text

BestByKey = dict[str, tuple[float, dict[str, Any] | None]]


@dataclass(frozen=True)
class SearchHit:
    """One result: 1-based rank, cosine score, the item's key and its caption/label."""

    rank: int
    score: float
    key: str
    caption: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def best_by_key(index: Any, emb: torch.Tensor, depth: int) -> list[tuple[BestByKey, float]]:
    """Per query of ``emb [Q, D]``: ``{key: (best score, that item's metadata)}`` over
    the top ``depth`` items of ``index``, and the lowest score seen (a bound for unseen
    keys). Items are read through the search result (a Milvus result numbers only
    the items it found), never by position in the index."""
    result = index.search(emb, min(depth, len(index)))
    out = []
    for q in range(emb.shape[0]):
        best: BestByKey = {}
        for score, i in zip(result.scores[q].tolist(), result.indices[q].tolist(), strict=True):
            if i < 0:  # an approximate index found fewer items than asked
                continue
            key = result.item_keys[i]
            if key not in best or score > best[key][0]:
                best[key] = (score, result.item_metadata[i])
        seen = [v for v in result.scores[q].tolist() if v != float("-inf")]
        out.append((best, min(seen) if seen else -2.0))
    return out


def item_hit(rank: int, score: float, key: str, metadata: dict[str, Any] | None) -> SearchHit:
    """A hit for an item: its key, caption (or first caption) and metadata."""
    meta = dict(metadata or {})
    caption = meta.pop("caption", None)
    if caption is None and meta.get("captions"):
        caption = meta["captions"][0]
    return SearchHit(rank, float(score), key, caption, meta or None)


def result_hits(result: Any, query: int) -> list[SearchHit]:
    """The hits of query ``query`` of an index's search result, item by item."""
    return [item_hit(h.rank, h.score, h.key, h.metadata) for h in result.hits(query)]


def one_hit_per_key(index: Any, emb: torch.Tensor, k: int) -> list[list[SearchHit]]:
    """Per query of ``emb [Q, D]``: the ``k`` best keys, each at its best-scoring item
    (e.g. an emoji at its best-matching style); ties broken by key."""
    hits = []
    for best, _ in best_by_key(index, emb, max(20 * k, 200)):
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        hits.append(
            [
                item_hit(rank, score, key, meta)
                for rank, (key, (score, meta)) in enumerate(ranked, 1)
            ]
        )
    return hits


def fuse(
    image_side: list[tuple[BestByKey, float]],
    caption_side: list[tuple[BestByKey, float]],
    k: int,
    image_weight: float,
) -> list[list[tuple[str, float, dict[str, Any] | None]]]:
    """Per query: the ``k`` best keys by ``w * s_image + (1 - w) * s_caption`` as
    ``(key, fused score, metadata of the key's best image or None)``.

    A key one side did not return takes that side's lowest score seen (its floor);
    ties are broken by key.
    """
    out = []
    for (img_best, img_floor), (cap_best, cap_floor) in zip(image_side, caption_side, strict=True):
        fused = {
            key: image_weight * img_best.get(key, (img_floor, None))[0]
            + (1 - image_weight) * cap_best.get(key, (cap_floor, None))[0]
            for key in set(img_best) | set(cap_best)
        }
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        out.append([(key, score, img_best.get(key, (0.0, None))[1]) for key, score in ranked])
    return out
