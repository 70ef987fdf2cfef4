"""Metric-learning scores: R@K, mAP, MAP@R, R-precision, NMI (percent).

Protocol: every sample queries all others, itself excluded (CUB/Cars/SOP); or,
with ``query_emb``, separate queries against a gallery (In-Shop), nothing
excluded. Queries without any relevant item are left out of every average.

Definitions (per query with R relevant items, ranking by descending score,
ties broken by gallery order — a stable sort):
- recall@K: 1 if any relevant item is in the top K.
- map: full average precision over the whole ranking (not truncated):
  ``1/R sum_{i: rel(i)} P(i)``.
- map_at_r (Musgrave et al. 2020): ``1/R sum_{i <= R} P(i) rel(i)``.
- r_precision: fraction of relevant items in the top R.
Memory: one ``chunk_size x N`` block of scores at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from retrievalkit.eval.clustering import kmeans, normalized_mutual_info


def _ranking_stats(scores: Tensor, relevant: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per query: recall@k hits, AP, AP@R, R-precision. ``[q, N]`` inputs -> ``[q]``."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rel = torch.gather(relevant, 1, order).double()  # [q, N] in rank order
    num_rel = rel.sum(dim=1)
    positions = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64, device=rel.device)
    precision = rel.cumsum(dim=1) / positions
    in_top_r = positions.unsqueeze(0) <= num_rel.unsqueeze(1)
    safe = num_rel.clamp(min=1)
    stats = {
        "map": (precision * rel).sum(dim=1) / safe,
        "map_at_r": (precision * rel * in_top_r).sum(dim=1) / safe,
        "r_precision": (rel * in_top_r).sum(dim=1) / safe,
        "num_rel": num_rel,
    }
    for k in ks:
        stats[f"recall@{k}"] = (rel[:, :k].sum(dim=1) > 0).double()
    return stats


def metric_learning_scores(
    emb: Tensor,
    labels: Tensor,
    ks: Sequence[int] = (1, 2, 4, 8),
    query_emb: Tensor | None = None,
    query_labels: Tensor | None = None,
    chunk_size: int = 512,
    nmi: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Scores of retrieval by ``emb [N, D]`` with ``labels [N]`` (see module doc).

    ``nmi`` clusters the gallery with k-means (k = number of classes, seeded) and
    reports NMI with arithmetic normalization.
    """
    labels = torch.as_tensor(labels, dtype=torch.long, device=emb.device)
    if emb.dim() != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(
            f"expected emb [N, D] and labels [N], got {tuple(emb.shape)}, {tuple(labels.shape)}"
        )
    leave_one_out = query_emb is None
    queries = emb if leave_one_out else query_emb.to(emb.device)
    q_labels = (
        labels
        if leave_one_out
        else torch.as_tensor(query_labels, dtype=torch.long, device=emb.device)
    )
    totals: dict[str, float] = {}
    counted = 0
    for start in range(0, queries.shape[0], chunk_size):
        stop = min(start + chunk_size, queries.shape[0])
        scores = (queries[start:stop] @ emb.T).float()
        relevant = q_labels[start:stop].unsqueeze(1) == labels.unsqueeze(0)
        if leave_one_out:
            rows = torch.arange(stop - start, device=emb.device)
            scores[rows, rows + start] = -torch.inf
            relevant[rows, rows + start] = False
        stats = _ranking_stats(scores, relevant, ks)
        has_rel = stats.pop("num_rel") > 0
        counted += int(has_rel.sum())
        for key, values in stats.items():
            totals[key] = totals.get(key, 0.0) + float(values[has_rel].sum())
    if counted == 0:
        raise ValueError("no query has a relevant item: every class has a single sample")
    result = {key: 100.0 * value / counted for key, value in totals.items()}
    result["num_queries"] = counted
    if nmi:
        num_classes = int(torch.unique(labels).numel())
        assignments = kmeans(emb.float(), num_classes, seed=seed)
        result["nmi"] = 100.0 * normalized_mutual_info(labels.cpu(), assignments.cpu())
    return result
