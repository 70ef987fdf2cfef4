"""Seeded k-means (k-means++ init) and normalized mutual information."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kmeans(points: Tensor, k: int, iterations: int = 50, seed: int = 0) -> Tensor:
    """Cluster ``points [N, D]`` into ``k`` clusters -> assignments ``[N]`` (int64)."""
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [points[first]]
    closest = ((points - centers[0]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = closest.cpu().double()
        if float(weights.sum()) <= 0:
            pick = int(torch.randint(n, (1,), generator=generator))
        else:
            pick = int(torch.multinomial(weights, 1, generator=generator))
        centers.append(points[pick])
        closest = torch.minimum(closest, ((points - points[pick]) ** 2).sum(dim=1))
    center_tensor = torch.stack(centers)
    assign = torch.cdist(points, center_tensor).argmin(dim=1)
    for _ in range(iterations):
        sums = torch.zeros_like(center_tensor).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        center_tensor = torch.where(counts > 0, sums / counts.clamp(min=1), center_tensor)
        new_assign = torch.cdist(points, center_tensor).argmin(dim=1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return assign


def normalized_mutual_info(labels: Tensor, clusters: Tensor) -> float:
    """NMI with arithmetic-mean normalization: ``I(L; C) / ((H(L) + H(C)) / 2)``.

    Returns 1.0 when both partitions are a single set (as scikit-learn does).
    """
    _, label_ids = torch.unique(labels, return_inverse=True)
    _, cluster_ids = torch.unique(clusters, return_inverse=True)
    n = labels.numel()
    joint = torch.zeros(int(label_ids.max()) + 1, int(cluster_ids.max()) + 1, dtype=torch.float64)
    joint.index_put_((label_ids, cluster_ids), torch.ones(n, dtype=torch.float64), accumulate=True)
    p = joint / n
    pl, pc = p.sum(dim=1), p.sum(dim=0)

    def entropy(q: Tensor) -> float:
        q = q[q > 0]
        return float(-(q * q.log()).sum())

    h_l, h_c = entropy(pl), entropy(pc)
    if h_l == 0 and h_c == 0:
        return 1.0
    nz = p > 0
    mutual = float((p[nz] * (p[nz] / (pl.unsqueeze(1) * pc.unsqueeze(0))[nz]).log()).sum())
    denom = (h_l + h_c) / 2
    return 0.0 if denom == 0 or math.isclose(mutual, 0.0, abs_tol=1e-15) else mutual / denom
