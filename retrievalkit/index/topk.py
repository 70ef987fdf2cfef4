"""Exact top-k inner products over a large database, one block at a time.

The database is scored ``block_size`` rows at a time and the queries
``query_block_size`` rows at a time, so at most a ``query_block_size x
block_size`` score matrix exists (never ``Q x N``); per-block top-k lists are
merged. Ties: among equal scores the lower database index ranks first
(``torch.topk`` alone does not promise that; it is enforced here).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _sort_candidates(scores: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Order each row by score (descending), equal scores by index (ascending)."""
    by_index = indices.argsort(dim=1)
    scores, indices = scores.gather(1, by_index), indices.gather(1, by_index)
    order = scores.argsort(dim=1, descending=True, stable=True)
    return scores.gather(1, order), indices.gather(1, order)


def _block_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` of ``scores [q, b]`` with ties to the lower column: ``[q, k]`` each."""
    if k >= scores.shape[1]:
        order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
        return scores.gather(1, order), order
    # one extra place shows whether the k-th score ties with one left out; if so,
    # topk may have kept arbitrary tied columns, and that (rare) row is fully sorted
    top = scores.topk(k + 1, dim=1)
    crowded = top.values[:, k] == top.values[:, k - 1]
    values, indices = _sort_candidates(top.values[:, :k], top.indices[:, :k])
    if bool(crowded.any()):
        rows = crowded.nonzero().squeeze(1)
        order = scores[rows].argsort(dim=1, descending=True, stable=True)[:, :k]
        indices[rows] = order
        values[rows] = scores[rows].gather(1, order)
    return values, indices


def _topk_one_query_block(
    queries: Tensor, database: Tensor, k: int, block_size: int
) -> tuple[Tensor, Tensor]:
    q = queries.shape[0]
    best_scores = queries.new_empty((q, 0))
    best_indices = torch.empty((q, 0), dtype=torch.long, device=queries.device)
    for start in range(0, database.shape[0], block_size):
        block = database[start : start + block_size]
        values, indices = _block_topk(queries @ block.T, min(k, block.shape[0]))
        merged_scores, merged_indices = _sort_candidates(
            torch.cat([best_scores, values], dim=1),
            torch.cat([best_indices, indices + start], dim=1),
        )
        best_scores, best_indices = merged_scores[:, :k], merged_indices[:, :k]
    return best_scores, best_indices


def blockwise_topk(
    queries: Tensor,
    database: Tensor,
    k: int,
    block_size: int = 16384,
    query_block_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` inner products of ``queries [Q, D]`` against ``database [N, D]``.

    Returns ``scores [Q, min(k, N)]`` (best first, dtype of the inputs) and
    ``indices [Q, min(k, N)]`` int64, on the inputs' device. Equal scores: lower
    index first. Peak extra memory is about ``query_block_size * block_size``
    scores.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if block_size < 1 or query_block_size < 1:
        raise ValueError(f"block sizes must be positive, got {block_size}, {query_block_size}")
    if queries.dim() != 2 or database.dim() != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"queries [Q, D] and database [N, D] must share D, got "
            f"{tuple(queries.shape)} and {tuple(database.shape)}"
        )
    k = min(k, database.shape[0])
    parts = [
        _topk_one_query_block(queries[start : start + query_block_size], database, k, block_size)
        for start in range(0, queries.shape[0], query_block_size)
    ]
    if not parts:
        empty = queries.new_empty((0, k))
        return empty, torch.empty((0, k), dtype=torch.long, device=queries.device)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
