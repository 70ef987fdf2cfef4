"""Smooth-AP (Brown, Xie, Kalogeiton, Zisserman, ECCV 2020), exact for any labels.

For a query ``q`` with positives ``P`` (same label, ``q`` itself excluded) and
retrieval set ``Omega`` (all references except ``q``)::

    AP_q = 1/|P| sum_{i in P} (1 + sum_{j in P, j != i} G(S_qj - S_qi))
                            / (1 + sum_{j in Omega, j != i} G(S_qj - S_qi))

with ``G(x) = sigmoid(x / tau)``. The loss is ``1 - mean_q AP_q`` over the
queries that have at least one positive; queries without one (a class with a
single sample in the batch and no same-label reference) are skipped, and a
batch where no query has a positive returns a zero that stays in the graph.
``include_self=True`` is the original code's (and PML's) variant: ``q`` counts
as its own positive, in ``P`` and in ``Omega`` (a query still needs one other
positive to be scored).

Cost: only the ranks of positives are needed, so each query with ``K_q``
positives costs ``K_q x R`` sigmoid differences: time ``O(sum_q K_q R)`` (i.e.
``O(B R K)``), never ``B x B x B``. Queries are grouped by positive count (no
padding: exact for any class sizes and order) and processed in chunks of
queries inside one autograd Function that recomputes the sigmoids in
backward, so the extra memory is ``O(B R)`` (the gradient of ``S``) plus one
``[chunk, K, R]`` buffer. Double backward is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses.core import PairBatch, PairLoss
from retrievalkit.losses.registry import register_loss

# Elements of the [chunk, K, R] sigmoid buffer (1 MiB in float32): small enough
# to stay in cache, large enough that per-chunk overhead is negligible.
DEFAULT_CHUNK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class _Group:
    """Queries sharing one positive count ``k``.

    ``rows [Q]`` long: query (row) indices; ``pos_idx [Q, k]`` long: reference
    columns of their positives (with ``include_self`` the query's own column).
    """

    rows: Tensor
    pos_idx: Tensor


def _positive_groups(pos: Tensor, include_self: bool) -> list[_Group]:
    """Group the queries of ``pos [B, R]`` (bool) by positive count.

    Queries with no positive (self excluded) are left out.
    """
    num_queries = pos.shape[0]
    device = pos.device
    n_pos = pos.sum(dim=1)
    if not bool((n_pos > 0).any()):
        return []
    rows_nz, cols_nz = pos.nonzero(as_tuple=True)  # row-major order
    k_total = n_pos + int(include_self)
    row_start = torch.cumsum(n_pos, 0) - n_pos
    slot = torch.arange(rows_nz.shape[0], device=device) - row_start[rows_nz]
    idx = torch.zeros(num_queries, int(k_total.max()), dtype=torch.long, device=device)
    idx[rows_nz, slot] = cols_nz
    if include_self:
        all_rows = torch.arange(num_queries, device=device)
        idx[all_rows, n_pos] = all_rows
    k_valid = torch.where(n_pos > 0, k_total, 0)
    groups = []
    for k in torch.unique(k_valid).tolist():
        if k == 0:
            continue
        rows = torch.nonzero(k_valid == k).squeeze(1)
        groups.append(_Group(rows=rows, pos_idx=idx[rows, :k]))
    return groups


def _chunk_terms(
    sim: Tensor, rows: Tensor, pos_idx: Tensor, inv_tau: float, exclude_self: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Sigmoids of one chunk of queries.

    Returns ``sig_all [c, k, R]`` = ``G(S_qj - S_qi)`` for every reference ``j``
    (0 at ``j = q`` when ``exclude_self``), ``sig_pos [c, k, k]`` = the same for
    ``j`` in the positives, and ``anchors [c, k]`` = ``S_qi / tau``.
    """
    scaled = sim.index_select(0, rows).mul_(inv_tau)  # [c, R]
    anchors = scaled.gather(1, pos_idx)  # [c, k]
    if exclude_self:
        scaled[torch.arange(rows.shape[0], device=rows.device), rows] = float("-inf")
    sig_all = torch.sub(scaled.unsqueeze(1), anchors.unsqueeze(2)).sigmoid_()
    sig_pos = torch.sub(anchors.unsqueeze(1), anchors.unsqueeze(2)).sigmoid_()
    return sig_all, sig_pos, anchors


def _chunks(group: _Group, num_refs: int, chunk_elements: int) -> list[tuple[Tensor, Tensor]]:
    """Split a group into ``(rows [c], pos_idx [c, k])`` chunks of about ``chunk_elements``."""
    k = group.pos_idx.shape[1]
    size = max(1, chunk_elements // (k * max(num_refs, k)))
    return list(zip(group.rows.split(size), group.pos_idx.split(size)))


class _SmoothAPFunction(torch.autograd.Function):
    """``sim [B, R] -> AP [B]`` (0 for queries outside every group)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sim: Tensor,
        groups: list[_Group],
        inv_tau: float,
        exclude_self: bool,
        chunk_elements: int,
    ) -> Tensor:
        ap = sim.new_zeros(sim.shape[0])
        with torch.autocast(device_type=sim.device.type, enabled=False):
            for group in groups:
                for rows, pos_idx in _chunks(group, sim.shape[1], chunk_elements):
                    sig_all, sig_pos, _ = _chunk_terms(sim, rows, pos_idx, inv_tau, exclude_self)
                    # the j = i term is G(0) = 0.5 in both sums: 1 + sum - 0.5
                    numer = sig_pos.sum(dim=2).add_(0.5)
                    denom = sig_all.sum(dim=2).add_(0.5)
                    ap[rows] = (numer / denom).mean(dim=1)
        ctx.save_for_backward(sim)
        ctx.groups, ctx.inv_tau = groups, inv_tau
        ctx.exclude_self, ctx.chunk_elements = exclude_self, chunk_elements
        return ap

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ap: Tensor) -> tuple[Tensor | None, ...]:
        (sim,) = ctx.saved_tensors
        grad_sim = torch.zeros_like(sim)
        with torch.autocast(device_type=sim.device.type, enabled=False):
            for group in ctx.groups:
                for rows, pos_idx in _chunks(group, sim.shape[1], ctx.chunk_elements):
                    grad_sim[rows] = _chunk_backward(
                        sim, rows, pos_idx, grad_ap[rows], ctx.inv_tau, ctx.exclude_self
                    )
        return grad_sim, None, None, None, None


def _chunk_backward(
    sim: Tensor,
    rows: Tensor,
    pos_idx: Tensor,
    grad_ap: Tensor,
    inv_tau: float,
    exclude_self: bool,
) -> Tensor:
    """Gradient of ``sum_q grad_ap[q] * AP_q`` w.r.t. the chunk's rows ``[c, R]``."""
    sig_all, sig_pos, _ = _chunk_terms(sim, rows, pos_idx, inv_tau, exclude_self)
    k = pos_idx.shape[1]
    numer = sig_pos.sum(dim=2).add_(0.5)
    denom = sig_all.sum(dim=2).add_(0.5)
    scale = grad_ap.unsqueeze(1) * (inv_tau / k)  # dAP/dratio = 1/k, d(x/tau) = 1/tau
    g_denom = -scale * numer / denom.square()  # [c, k]
    g_numer = scale / denom  # [c, k]
    # d sigmoid(x) = s (1 - s); x = S_qj - S_qi -> +j, -i
    w_all = torch.ops.aten.sigmoid_backward(g_denom.unsqueeze(2).expand_as(sig_all), sig_all)
    w_pos = torch.ops.aten.sigmoid_backward(g_numer.unsqueeze(2).expand_as(sig_pos), sig_pos)
    grad_rows = w_all.sum(dim=1)  # [c, R]
    grad_anchor = w_pos.sum(dim=1) - w_pos.sum(dim=2) - w_all.sum(dim=2)  # [c, k]
    return grad_rows.scatter_add_(1, pos_idx, grad_anchor)


def smooth_ap_per_query(
    sim: Tensor,
    pos: Tensor,
    temperature: float = 0.01,
    include_self: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """Smooth-AP of every query.

    Args:
        sim: ``[B, R]`` similarities, float32/64; column ``q < B`` is query ``q``
            itself (the core's convention: references = batch + extra refs).
        pos: ``[B, R]`` bool positives, self-pairs excluded.
        temperature: ``tau`` of ``G(x) = sigmoid(x / tau)``.
        include_self: count the query as its own positive (original code / PML).
        chunk_elements: size of the ``[chunk, K, R]`` working buffer.

    Returns:
        ``ap [B]`` (0 where a query has no positive) and ``valid [B]`` bool
        (queries with at least one positive).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if pos.shape != sim.shape or pos.dtype != torch.bool:
        raise ValueError(
            f"pos must be a bool tensor shaped like sim {tuple(sim.shape)}, "
            f"got {pos.dtype} {tuple(pos.shape)}"
        )
    valid = pos.any(dim=1)
    groups = _positive_groups(pos, include_self)
    ap = _SmoothAPFunction.apply(
        sim, groups, 1.0 / temperature, not include_self, max(1, int(chunk_elements))
    )
    return ap, valid


@register_loss("smooth_ap")
class SmoothAPLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``.

    Returns ``1 - mean AP`` over the queries with at least one positive (see the
    module docstring for the formula); 0 (in the graph) if no query has one.
    Labels may come in any order with any class sizes. Embeddings are expected
    L2-normalized; float16/bfloat16 inputs are computed in float32.

    Args:
        temperature: ``tau`` of the sigmoid (0.01 in the paper).
        include_self: count each query as its own top-ranked positive, as the
            original code and pytorch-metric-learning do.
    """

    def __init__(self, temperature: float = 0.01, include_self: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.include_self = temperature, include_self

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        ap, valid = smooth_ap_per_query(pairs.sim, pairs.pos, self.temperature, self.include_self)
        num_valid = int(valid.sum())
        if num_valid == 0:
            return pairs.zero()
        return 1.0 - ap.sum() / num_valid

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_self={self.include_self}"
