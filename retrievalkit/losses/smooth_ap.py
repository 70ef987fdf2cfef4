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
``[chunk, K, R]`` buffer. Without extra references the similarity
``x @ x.T`` is built with a one-matmul backward (``(G + G.T) @ x`` instead of
two matmuls). Double backward is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses.core import (
    PairBatch,
    PairLoss,
    check_embeddings,
    compute_dtype,
    same_label_mask,
)
from retrievalkit.losses.registry import register_loss

# Elements of the [chunk, K, R] sigmoid buffer (4 MiB in float32): large enough
# that per-chunk overhead is small, small enough to stay near the cache.
DEFAULT_CHUNK_ELEMENTS = 1 << 20


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
    rows_nz, cols_nz = pos.nonzero(as_tuple=True)  # row-major order
    if rows_nz.numel() == 0:
        return []
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
        if k > 0:
            rows = torch.nonzero(k_valid == k).squeeze(1)
            groups.append(_Group(rows=rows, pos_idx=idx[rows, :k]))
    return groups


def _row_chunks(num_rows: int, row_elements: int, chunk_elements: int) -> list[slice]:
    """Slices of ``num_rows`` rows holding about ``chunk_elements`` elements each."""
    size = max(1, chunk_elements // max(1, row_elements))
    return [slice(a, min(a + size, num_rows)) for a in range(0, num_rows, size)]


class _Chunker:
    """Recomputes the sigmoid blocks of one group, chunk by chunk.

    ``anchors [Q, k]`` = ``S_qi / tau`` of the group's positives.
    ``all_block(c)`` -> ``[c, k, R]`` = ``G(S_qj - S_qi)`` for every reference
    ``j`` (0 at ``j = q`` when the query is excluded from its own retrieval set),
    written into one reused buffer (valid until the next call);
    ``pos_block(c)`` -> ``[c, k, k]`` = the same for ``j`` in the positives.
    """

    def __init__(
        self,
        sim: Tensor,
        group: _Group,
        inv_tau: float,
        exclude_self: bool,
        chunk_elements: int,
    ) -> None:
        self.sim, self.group, self.inv_tau, self.exclude_self = sim, group, inv_tau, exclude_self
        num_rows, k = group.pos_idx.shape
        self.anchors = sim[group.rows.unsqueeze(1), group.pos_idx] * inv_tau
        self.all_chunks = _row_chunks(num_rows, k * sim.shape[1], chunk_elements)
        self.pos_chunks = _row_chunks(num_rows, k * k, chunk_elements)
        rows_per_chunk = self.all_chunks[0].stop
        self.buffer = sim.new_empty(rows_per_chunk, k, sim.shape[1])
        self.local = torch.arange(rows_per_chunk, device=sim.device)
        self.neg_inf = sim.new_full((), float("-inf"))

    def all_block(self, chunk: slice) -> Tensor:
        rows = self.group.rows[chunk]
        scaled = self.sim.index_select(0, rows).mul_(self.inv_tau)  # [c, R]
        if self.exclude_self:
            scaled.index_put_((self.local[: rows.shape[0]], rows), self.neg_inf)
        out = self.buffer[: rows.shape[0]]
        torch.sub(scaled.unsqueeze(1), self.anchors[chunk].unsqueeze(2), out=out)
        return out.sigmoid_()

    def pos_block(self, chunk: slice) -> Tensor:
        anchors = self.anchors[chunk]
        return torch.sub(anchors.unsqueeze(1), anchors.unsqueeze(2)).sigmoid_()

    def sums(self) -> tuple[Tensor, Tensor]:
        """``1 + sum_{j != i}`` over positives / over the retrieval set, ``[Q, k]`` each.

        The ``j = i`` term is ``G(0) = 0.5`` in both sums: ``1 + sum - 0.5``.
        """
        numer = torch.empty_like(self.anchors)
        denom = torch.empty_like(self.anchors)
        for chunk in self.pos_chunks:
            torch.sum(self.pos_block(chunk), dim=2, out=numer[chunk])
        for chunk in self.all_chunks:
            torch.sum(self.all_block(chunk), dim=2, out=denom[chunk])
        return numer.add_(0.5), denom.add_(0.5)


def _weighted_sigmoid_grad(sig: Tensor, weight: Tensor) -> Tensor:
    """``weight[..., None] * sig * (1 - sig)`` written in place into ``sig [c, k, M]``."""
    grad_out = weight.unsqueeze(2).expand_as(sig)
    return torch.ops.aten.sigmoid_backward.grad_input(grad_out, sig, grad_input=sig)


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
        ratios = []
        with torch.autocast(device_type=sim.device.type, enabled=False):
            for group in groups:
                chunker = _Chunker(sim, group, inv_tau, exclude_self, chunk_elements)
                numer, denom = chunker.sums()
                ap[group.rows] = (numer / denom).mean(dim=1)
                ratios.append((numer, denom))
        ctx.save_for_backward(sim)
        ctx.groups, ctx.ratios, ctx.inv_tau = groups, ratios, inv_tau
        ctx.exclude_self, ctx.chunk_elements = exclude_self, chunk_elements
        return ap

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ap: Tensor) -> tuple[Tensor | None, ...]:
        (sim,) = ctx.saved_tensors
        grad_sim = torch.zeros_like(sim)
        with torch.autocast(device_type=sim.device.type, enabled=False):
            for group, (numer, denom) in zip(ctx.groups, ctx.ratios):
                chunker = _Chunker(sim, group, ctx.inv_tau, ctx.exclude_self, ctx.chunk_elements)
                _group_backward(chunker, numer, denom, grad_ap, grad_sim)
        return grad_sim, None, None, None, None


def _group_backward(
    chunker: _Chunker,
    numer: Tensor,
    denom: Tensor,
    grad_ap: Tensor,
    grad_sim: Tensor,
) -> None:
    """Write ``d(sum_q grad_ap[q] AP_q) / dS`` of one group's rows into ``grad_sim``.

    ``AP_q = mean_i numer_qi / denom_qi``; each sum is over ``G(x)``,
    ``x = (S_qj - S_qi) / tau``, so ``dG = G (1 - G) / tau`` goes ``+`` to ``j``
    and ``-`` to the positive ``i``.
    """
    rows, pos_idx = chunker.group.rows, chunker.group.pos_idx
    k = pos_idx.shape[1]
    scale = grad_ap[rows].unsqueeze(1) * (chunker.inv_tau / k)  # [Q, 1]
    g_numer = scale / denom  # [Q, k]
    g_denom = -scale * numer / denom.square()  # [Q, k]
    grad_anchor = torch.empty_like(numer)
    for chunk in chunker.pos_chunks:
        w = _weighted_sigmoid_grad(chunker.pos_block(chunk), g_numer[chunk])
        torch.sub(w.sum(dim=1), w.sum(dim=2), out=grad_anchor[chunk])
    for chunk in chunker.all_chunks:
        w = _weighted_sigmoid_grad(chunker.all_block(chunk), g_denom[chunk])
        grad_sim[rows[chunk]] = w.sum(dim=1)
        grad_anchor[chunk] -= w.sum(dim=2)
    grad_sim.index_put_((rows.unsqueeze(1), pos_idx), grad_anchor, accumulate=True)


class _SelfSimilarity(torch.autograd.Function):
    """``x [B, D] -> x @ x.T [B, B]`` with the one-matmul backward ``(G + G.T) @ x``.

    Autograd's backward of ``x @ x.T`` does two matmuls (one per operand); this
    is the same gradient with one. ``x`` must already be in the compute dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return x @ x.T

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (grad + grad.T) @ x


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
    groups = _positive_groups(pos, include_self)
    valid = torch.zeros(pos.shape[0], dtype=torch.bool, device=pos.device)
    for group in groups:
        valid[group.rows] = True
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

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Same result as :meth:`PairLoss.forward`; without references the
        similarity is built with a one-matmul backward (``_SelfSimilarity``)."""
        if ref_embeddings is not None or ref_labels is not None:
            return super().forward(embeddings, labels, ref_embeddings, ref_labels)
        check_embeddings(embeddings, labels)
        sim = _SelfSimilarity.apply(embeddings.to(compute_dtype(embeddings.dtype)))
        pos = same_label_mask(labels, labels).fill_diagonal_(False)
        return self._loss(sim, pos)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        return self._loss(pairs.sim, pairs.pos)

    def _loss(self, sim: Tensor, pos: Tensor) -> Tensor:
        """``1 - mean AP`` over queries with a positive; ``sim [B, R]``, ``pos [B, R]``."""
        ap, valid = smooth_ap_per_query(sim, pos, self.temperature, self.include_self)
        num_valid = int(valid.sum())
        if num_valid == 0:
            return sim.sum() * 0.0  # stays in the graph (as PairBatch.zero)
        return 1.0 - ap.sum() / num_valid

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_self={self.include_self}"
