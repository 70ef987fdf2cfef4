"""Metric-learning scores: R@K, mAP, MAP@R, R-precision, NMI (all in percent).

Protocols: every sample queries all others, itself excluded (CUB/Cars/SOP); or,
with ``query_emb``, separate queries against a gallery (In-Shop), nothing
excluded. Queries without any relevant item in the gallery are left out of every
average (``num_queries`` says how many counted).

Ranking by descending score (dot product). Ties count in the query's favour, as
in the cross-modal ranks: a relevant item is ranked before every irrelevant item
with the same score, i.e. the ``j``-th relevant item (in score order) sits at
position ``p_j = j + #{irrelevant items scoring strictly higher}``. Per query
with ``R`` relevant items:

- ``recall@K``: 1 if ``p_1 <= K`` (some relevant item in the top K).
- ``map``: full average precision over the whole ranking, ``1/R sum_j j / p_j``
  (never truncated at K or R).
- ``map_at_r`` (Musgrave et al. 2020, "A Metric Learning Reality Check"):
  ``1/R sum_{i <= R} P(i) rel(i)`` = ``1/R sum_{j : p_j <= R} j / p_j``.
- ``r_precision``: ``#{j : p_j <= R} / R``.

Memory: queries are scored in chunks; each chunk sorts its ``[chunk, N]`` scores
once (the only way to place every relevant item for the full mAP) and works on
a few ``[chunk, N]`` tensors. ``chunk_size=None`` picks the number of rows that
keeps them under about ``MEMORY_BUDGET`` bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from retrievalkit.eval.clustering import kmeans, normalized_mutual_info

MEMORY_BUDGET = 256 * 2**20
BYTES_PER_SCORE = 96  # sorted scores and indices, run starts, counts, float64 precisions


def relevant_positions(scores: Tensor, relevant: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Optimistic positions of the relevant items of each query.

    Args:
        scores: ``[Q, N]`` scores (higher is better; ``-inf`` for excluded items).
        relevant: ``[Q, N]`` bool, True for the items relevant to each query.
    Returns:
        ``order [Q, N]`` (1-based index ``j`` of each item among its query's relevant
        items in score order, 0 for irrelevant ones), ``position [Q, N]`` (``p_j``,
        0 for irrelevant ones), both in sorted order, and ``num_relevant [Q]``.
    """
    values, idx = torch.sort(scores, dim=1, descending=True)
    rel = torch.gather(relevant, 1, idx)
    n = scores.shape[1]
    # index of the first item of each run of equal scores = #items strictly higher
    new_run = torch.ones_like(rel)
    new_run[:, 1:] = values[:, 1:] != values[:, :-1]
    above = torch.arange(n, device=scores.device).expand_as(idx) * new_run
    above = torch.cummax(above, dim=1).values
    order = torch.cumsum(rel, dim=1)  # relevant items up to and including this one
    rel_above = torch.gather(order - rel.long(), 1, above)  # relevant items strictly higher
    position = (order + above - rel_above) * rel
    return order * rel, position, order[:, -1]


def _query_stats(order: Tensor, position: Tensor, num_rel: Tensor, ks: Sequence[int]) -> dict:
    """Per-query metrics ``[Q]`` (float64) from ``relevant_positions``."""
    found = position > 0
    precision = torch.where(found, order.double() / position.clamp(min=1).double(), 0.0)
    within_r = found & (position <= num_rel.unsqueeze(1))
    safe = num_rel.clamp(min=1).double()
    first = torch.where(found, position, position.shape[1] + 1).amin(dim=1)
    stats = {
        "map": precision.sum(dim=1) / safe,
        "map_at_r": (precision * within_r).sum(dim=1) / safe,
        "r_precision": within_r.sum(dim=1).double() / safe,
    }
    for k in ks:
        stats[f"recall@{k}"] = (first <= k).double()
    return stats


def _auto_chunk(num_refs: int) -> int:
    return max(1, MEMORY_BUDGET // (BYTES_PER_SCORE * max(num_refs, 1)))


def _check(emb: Tensor, labels: Tensor, what: str) -> None:
    if emb.dim() != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(
            f"expected {what} [N, D] and its labels [N], got {tuple(emb.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not bool(torch.isfinite(emb).all()):
        raise ValueError(f"{what} has NaN or infinite values (would score as ties)")


@torch.no_grad()
def metric_learning_scores(
    emb: Tensor,
    labels: Tensor,
    ks: Sequence[int] = (1, 2, 4, 8),
    query_emb: Tensor | None = None,
    query_labels: Tensor | None = None,
    chunk_size: int | None = None,
    nmi: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Retrieval scores of ``emb [N, D]`` with integer ``labels [N]`` (see module doc).

    Args:
        emb, labels: the gallery (and the queries when ``query_emb`` is None).
        ks: the K of ``recall@K``.
        query_emb, query_labels: ``[Q, D]``, ``[Q]`` separate queries (In-Shop).
        chunk_size: query rows per chunk (None: fit ``MEMORY_BUDGET``).
        nmi: also cluster the gallery with seeded k-means++ (k = number of gallery
            classes) and report NMI (arithmetic normalization, as scikit-learn).
        seed: k-means seed.
    Returns:
        ``recall@K`` for each K, ``map``, ``map_at_r``, ``r_precision``, ``nmi``
        (percent floats), ``num_queries`` (queries counted) and ``num_gallery``.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    labels = torch.as_tensor(labels).to(device=emb.device, dtype=torch.long)
    _check(emb, labels, "emb")
    leave_one_out = query_emb is None
    if leave_one_out:
        queries, q_labels = emb, labels
    else:
        if query_labels is None:
            raise ValueError("query_emb needs query_labels")
        queries = query_emb.to(device=emb.device, dtype=emb.dtype)
        q_labels = torch.as_tensor(query_labels).to(device=emb.device, dtype=torch.long)
        _check(queries, q_labels, "query_emb")
        if queries.shape[1] != emb.shape[1]:
            raise ValueError(f"query_emb has D={queries.shape[1]}, emb has D={emb.shape[1]}")
    rows = chunk_size or _auto_chunk(emb.shape[0])
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    totals: dict[str, float] = {}
    counted = 0
    for start in range(0, queries.shape[0], rows):
        stop = min(start + rows, queries.shape[0])
        scores = queries[start:stop] @ emb.T  # [q, N]
        relevant = q_labels[start:stop].unsqueeze(1) == labels.unsqueeze(0)
        if leave_one_out:
            local = torch.arange(stop - start, device=emb.device)
            scores[local, local + start] = -torch.inf  # last, and never counted as higher
            relevant[local, local + start] = False
        order, position, num_rel = relevant_positions(scores, relevant)
        keep = num_rel > 0
        counted += int(keep.sum())
        for key, values in _query_stats(order, position, num_rel, ks).items():
            totals[key] = totals.get(key, 0.0) + float(values[keep].sum())
    if counted == 0:
        raise ValueError(
            "no query has a relevant item in the gallery (every class has one sample?)"
        )
    result: dict[str, Any] = {key: 100.0 * value / counted for key, value in totals.items()}
    result["num_queries"] = counted
    result["num_gallery"] = int(emb.shape[0])
    if nmi:
        num_classes = int(torch.unique(labels).numel())
        clusters = kmeans(emb.float(), num_classes, seed=seed)
        result["nmi"] = 100.0 * normalized_mutual_info(labels.cpu(), clusters.cpu())
    return result
