"""Seeded k-means (k-means++ initialization) and normalized mutual information.

k-means costs ``O(k N D)`` for the initialization and per Lloyd iteration;
distances are computed in chunks of points (``||x||^2 - 2 x.c + ||c||^2``), so
memory stays ``O(chunk * k)`` rather than ``N x k``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ASSIGN_BUDGET = 64 * 2**20  # bytes of [chunk, k] distances at a time


def _assign(points: Tensor, centers: Tensor) -> Tensor:
    """Index ``[N]`` of the nearest center (lowest index on ties) for ``points [N, D]``."""
    center_sq = (centers * centers).sum(dim=1)
    rows = max(1, ASSIGN_BUDGET // (4 * max(centers.shape[0], 1)))
    out = torch.empty(points.shape[0], dtype=torch.long, device=points.device)
    for start in range(0, points.shape[0], rows):
        part = points[start : start + rows]
        out[start : start + rows] = (center_sq - 2 * part @ centers.T).argmin(dim=1)
    return out


def _init_plus_plus(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each next center drawn with probability ``~ D(x)^2``."""
    n = points.shape[0]
    picks = [int(torch.randint(n, (1,), generator=generator))]
    closest = ((points - points[picks[0]]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = closest.double().cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than k
            pick = int(torch.randint(n, (1,), generator=generator))
        else:
            pick = int(torch.multinomial(weights, 1, generator=generator))
        picks.append(pick)
        closest = torch.minimum(closest, ((points - points[pick]) ** 2).sum(dim=1))
    return points[picks].clone()


@torch.no_grad()
def kmeans(points: Tensor, k: int, iterations: int = 50, seed: int = 0) -> Tensor:
    """Cluster ``points [N, D]`` into ``k`` clusters -> assignments ``[N]`` (int64).

    k-means++ seeding from ``torch.Generator().manual_seed(seed)`` (same seed, same
    result), then Lloyd iterations until the assignment stops changing or
    ``iterations`` is reached. An empty cluster keeps its previous center.
    """
    n = points.shape[0]
    if points.dim() != 2:
        raise ValueError(f"expected points [N, D], got {tuple(points.shape)}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of points), got {k}")
    generator = torch.Generator().manual_seed(seed)
    centers = _init_plus_plus(points, k, generator)
    assign = _assign(points, centers)
    for _ in range(iterations):
        sums = torch.zeros_like(centers).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
        new_assign = _assign(points, centers)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return assign


def normalized_mutual_info(labels: Tensor, clusters: Tensor) -> float:
    """NMI with arithmetic-mean normalization: ``I(L; C) / ((H(L) + H(C)) / 2)``.

    Same convention as scikit-learn's default: 1.0 when both partitions are a single
    set, 0.0 when the mutual information is zero. Natural logs (the base cancels).
    """
    if labels.shape != clusters.shape or labels.dim() != 1:
        raise ValueError(
            f"labels and clusters must both be [N], got {tuple(labels.shape)} and "
            f"{tuple(clusters.shape)}"
        )
    _, label_ids = torch.unique(labels.cpu(), return_inverse=True)
    _, cluster_ids = torch.unique(clusters.cpu(), return_inverse=True)
    n = labels.numel()
    joint = torch.zeros(int(label_ids.max()) + 1, int(cluster_ids.max()) + 1, dtype=torch.float64)
    joint.index_put_((label_ids, cluster_ids), torch.ones(n, dtype=torch.float64), accumulate=True)
    p = joint / n
    pl, pc = p.sum(dim=1), p.sum(dim=0)

    def entropy(q: Tensor) -> float:
        q = q[q > 0]
        return float(-(q * q.log()).sum())

    h_l, h_c = entropy(pl), entropy(pc)
    if pl.numel() == 1 and pc.numel() == 1:
        return 1.0
    nz = p > 0
    mutual = float((p[nz] * (p[nz] / (pl.unsqueeze(1) * pc.unsqueeze(0))[nz]).log()).sum())
    denom = (h_l + h_c) / 2
    if denom <= 0 or math.isclose(mutual, 0.0, abs_tol=1e-15):
        return 0.0
    return max(0.0, mutual) / denom
