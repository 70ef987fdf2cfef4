"""Smooth-AP (Brown, Xie, Kalogeiton, Zisserman, ECCV 2020), exact for any labels.
(Over 300 lines on purpose: the exact forward and its hand-written backward share the group passes and change together.)

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
queries. The loss computes ``dL/dS`` in the same pass as its value, from the
sigmoid blocks while they are in the cache; ``smooth_ap_per_query`` (any
upstream gradient) recomputes them in backward. Extra memory is ``O(B R)``
(the gradient of ``S``) plus one ``[chunk, K, R]`` buffer. The passes read
``S / tau`` (one scaled copy, or the matmul's own output) and write each row's
gradient over it. Without extra references the loss builds ``x x^T / tau`` from
the upper triangle (:func:`~retrievalkit.losses.core.scaled_gram`, half a matmul)
with a one-matmul backward (``(G + G.T) @ x`` instead of two matmuls). Double
backward is not supported. On float32 CPU tensors a group's pass is one C kernel
(:mod:`~retrievalkit.losses.smooth_ap_native`: each query's row read once, its
``k x R`` sigmoids kept in a per-thread scratch) instead of :func:`_group_pass`'s
six passes over each block; both compute the formula above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses import smooth_ap_native
from retrievalkit.losses.core import PairBatch, PairLoss, scaled_gram, symmetrize_
from retrievalkit.losses.registry import register_loss

# Elements of the [chunk, K, R] sigmoid buffer (8 MiB in float32): large enough
# that per-chunk overhead is small (at 2 threads each operation is split across
# the cores), small enough to stay near the cache. At B = 4096 on this machine, in
# two quiet minutes (interleaved with the floor, 5 samples, throwaway script),
# ours / floor at 8 MiB vs 4 MiB vs 16 MiB: 2 threads 1.49 / 1.55 / 1.53 and
# 1.60 / 1.70 / 1.57; 1 thread 1.40 / 1.41 / 1.44 and 1.48 / 1.51 / 1.49.
DEFAULT_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class _Group:
    """Queries sharing one positive count ``k``.

    ``rows [Q]`` long: query (row) indices; ``pos_idx [Q, k]`` long: reference
    columns of their positives (with ``include_self`` the query's own column);
    ``start``: the first row when the rows are consecutive (then a chunk's rows
    are a slice of ``S``, read and written without an index), else ``None``.
    """

    rows: Tensor
    pos_idx: Tensor
    start: int | None = None

    def row_slice(self, chunk: slice) -> slice | None:
        """The rows of ``chunk`` (positions in the group) as a slice of ``S``, or ``None``."""
        if self.start is None:
            return None
        return slice(self.start + chunk.start, self.start + min(chunk.stop, len(self.rows)))


def _positive_groups(pos: Tensor, include_self: bool) -> list[_Group]:
    """Group the queries of ``pos [B, R]`` (bool) by positive count.

    Queries with no positive (self excluded) are left out.
    """
    n_pos = pos.sum(dim=1)
    rows_nz, cols_nz = pos.nonzero(as_tuple=True)  # row-major order
    row_start = torch.cumsum(n_pos, 0) - n_pos
    slot = torch.arange(rows_nz.shape[0], device=pos.device) - row_start[rows_nz]
    width = max(int(n_pos.max()) if pos.shape[0] else 0, 1)
    idx = torch.zeros(pos.shape[0], width, dtype=torch.long, device=pos.device)
    idx[rows_nz, slot] = cols_nz
    return _groups_by_count(idx, n_pos, include_self)


def _groups_by_count(idx: Tensor, n_pos: Tensor, include_self: bool) -> list[_Group]:
    """Groups from ``idx [B, K]`` (row ``q``: its ``n_pos[q]`` positive columns
    first, then padding) and ``n_pos [B]``; rows without a positive are left out."""
    num_queries = idx.shape[0]
    if num_queries == 0 or int(n_pos.max()) == 0:
        return []
    if include_self:  # the query's own column after its positives
        all_rows = torch.arange(num_queries, device=idx.device)
        idx = torch.cat([idx, idx.new_zeros(num_queries, 1)], dim=1)
        idx[all_rows, n_pos] = all_rows
    k_valid = torch.where(n_pos > 0, n_pos + int(include_self), 0)
    groups = []
    for k in torch.unique(k_valid).tolist():
        if k > 0:
            rows = torch.nonzero(k_valid == k).squeeze(1)
            first, last = rows[[0, -1]].tolist()
            start = first if last - first + 1 == rows.shape[0] else None
            groups.append(_Group(rows=rows, pos_idx=idx[rows, :k], start=start))
    return groups


def _row_chunks(num_rows: int, row_elements: int, chunk_elements: int) -> list[slice]:
    """Slices of ``num_rows`` rows holding about ``chunk_elements`` elements each."""
    size = max(1, chunk_elements // max(1, row_elements))
    return [slice(a, min(a + size, num_rows)) for a in range(0, num_rows, size)]


def _exclude_self_(logits: Tensor, exclude_self: bool) -> Tensor:
    """With ``exclude_self``, each query's own column (``q < B``) of ``logits [B, R]``
    set to ``-inf`` in place (``G = 0`` there: not in its own retrieval set)."""
    if exclude_self:
        logits.diagonal().fill_(float("-inf"))
    return logits


def _logits(sim: Tensor, inv_tau: float, exclude_self: bool) -> Tensor:
    """``sim / tau`` ``[B, R]`` as a fresh tensor (:func:`_exclude_self_` applied).
    The passes read a row of it once and may then write that row's gradient over it."""
    return _exclude_self_(sim * inv_tau, exclude_self)


def _zero_rows_outside(valid: Tensor, grad: Tensor) -> Tensor:
    """Zero the rows of ``grad [B, R]`` whose query has no positive (``valid [B]`` False)."""
    return grad.index_fill_(0, (~valid).nonzero().squeeze(1), 0)


class _Chunker:
    """Computes the sigmoid blocks of one group, chunk by chunk of its queries.

    ``logits [B, R]`` = ``S / tau`` (own column at ``-inf`` when excluded, see
    :func:`_logits`); ``anchors [Q, k]`` = the logits of the group's positives.
    ``all_block(c)`` -> ``[c, k, R]`` = ``G(S_qj - S_qi)`` for every reference
    ``j``, written into one reused buffer (valid until the next call);
    ``pos_block(c)`` -> ``[c, k, k]`` = the same for ``j`` in the positives.
    """

    def __init__(self, logits: Tensor, group: _Group, inv_tau: float, chunk_elements: int) -> None:
        self.logits, self.group, self.inv_tau = logits, group, inv_tau
        num_rows, k = group.pos_idx.shape
        self.anchors = logits[group.rows.unsqueeze(1), group.pos_idx]
        self.chunks = _row_chunks(num_rows, k * logits.shape[1], chunk_elements)
        rows_per_chunk = self.chunks[0].stop
        self.buffer = logits.new_empty(rows_per_chunk, k, logits.shape[1])
        # rows that are not consecutive are gathered into one reused buffer
        self.gathered = (
            None if group.start is not None else logits.new_empty(rows_per_chunk, logits.shape[1])
        )

    def all_block(self, chunk: slice) -> Tensor:
        row_slice = self.group.row_slice(chunk)
        if row_slice is not None:
            rows = self.logits[row_slice]  # [c, R], a view
        else:
            assert self.gathered is not None
            index = self.group.rows[chunk]
            rows = torch.index_select(self.logits, 0, index, out=self.gathered[: index.shape[0]])
        out = self.buffer[: rows.shape[0]]
        torch.sub(rows.unsqueeze(1), self.anchors[chunk].unsqueeze(2), out=out)
        return out.sigmoid_()

    def pos_block(self, chunk: slice) -> Tensor:
        anchors = self.anchors[chunk]
        return torch.sub(anchors.unsqueeze(1), anchors.unsqueeze(2)).sigmoid_()


def _weighted_sigmoid_grad(sig: Tensor, weight: Tensor) -> Tensor:
    """``weight[..., None] * sig * (1 - sig)`` written in place into ``sig [c, k, M]``."""
    grad_out = weight.unsqueeze(2).expand_as(sig)
    return torch.ops.aten.sigmoid_backward.grad_input(grad_out, sig, grad_input=sig)


def _group_pass(chunker: _Chunker, weight: Tensor | None = None) -> Tensor:
    """``AP [Q]`` of one group's queries, in one pass over its sigmoid blocks.

    With ``weight [Q]`` also writes ``d(sum_q weight_q AP_q) / dS`` of the
    group's rows over those rows of ``chunker.logits [B, R]`` (each row is read
    before it is written), from the same blocks while they are in the cache. ``AP_q = mean_i numer_qi / denom_qi`` (``1 + sum_{j != i}``
    over the positives / the retrieval set; the ``j = i`` term is ``G(0) = 0.5``
    in both sums); each sum is over ``G(x)``, ``x = (S_qj - S_qi) / tau``, so
    ``dG = G (1 - G) / tau`` goes ``+`` to ``j`` and ``-`` to the positive ``i``.
    """
    rows, pos_idx = chunker.group.rows, chunker.group.pos_idx
    grad_sim = chunker.logits
    k = pos_idx.shape[1]
    ap = chunker.anchors.new_empty(rows.shape[0])
    for chunk in chunker.chunks:
        pos_sig, all_sig = chunker.pos_block(chunk), chunker.all_block(chunk)
        numer = pos_sig.sum(dim=2).add_(0.5)  # [c, k]
        denom = all_sig.sum(dim=2).add_(0.5)  # [c, k]
        ratio = numer / denom
        torch.mean(ratio, dim=1, out=ap[chunk])
        if weight is None:
            continue
        g_numer = (weight[chunk] * (chunker.inv_tau / k)).unsqueeze(1) / denom  # [c, k]
        g_denom = -g_numer * ratio  # [c, k]
        w_pos = _weighted_sigmoid_grad(pos_sig, g_numer)
        grad_anchor = w_pos.sum(dim=1) - w_pos.sum(dim=2)  # [c, k]
        w_all = _weighted_sigmoid_grad(all_sig, g_denom)
        row_slice = chunker.group.row_slice(chunk)
        if row_slice is None:
            grad_sim.index_copy_(0, rows[chunk], w_all.sum(dim=1))
        else:
            torch.sum(w_all, dim=1, out=grad_sim[row_slice])
        grad_anchor -= w_all.sum(dim=2)
        grad_sim.index_put_(
            (rows[chunk].unsqueeze(1), pos_idx[chunk]), grad_anchor, accumulate=True
        )
    return ap


def _group_ap(
    logits: Tensor,
    group: _Group,
    inv_tau: float,
    chunk_elements: int,
    weight: Tensor | None = None,
) -> Tensor:
    """``AP [Q]`` of one group from ``logits [B, R]`` (:func:`_logits`); with ``weight
    [Q]`` also its ``dL/dS`` written over the group's rows of ``logits``.

    Float32 on the CPU runs the fused kernel (:mod:`~retrievalkit.losses.smooth_ap_native`,
    the same pass in C), anything else :func:`_group_pass`.
    """
    if smooth_ap_native.usable(logits, group.pos_idx.shape[1]):
        return smooth_ap_native.group_ap(logits, group.rows, group.pos_idx, inv_tau, weight)
    chunker = _Chunker(logits, group, inv_tau, chunk_elements)
    return _group_pass(chunker, weight)


class _SmoothAPFunction(torch.autograd.Function):
    """``sim [B, R] -> AP [B]`` (0 for queries outside every group).

    The sigmoid blocks are recomputed in backward (memory ``O(B R)``).
    """

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
            logits = _logits(sim.detach(), inv_tau, exclude_self)
            for group in groups:
                ap[group.rows] = _group_ap(logits, group, inv_tau, chunk_elements)
        ctx.save_for_backward(sim)
        ctx.groups, ctx.inv_tau = groups, inv_tau
        ctx.exclude_self, ctx.chunk_elements = exclude_self, chunk_elements
        return ap

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_ap: Tensor) -> tuple[Tensor | None, ...]:
        (sim,) = ctx.saved_tensors
        with torch.autocast(device_type=sim.device.type, enabled=False):
            grad = _logits(sim, ctx.inv_tau, ctx.exclude_self)  # rows become dL/dS
            for group in ctx.groups:
                _group_ap(grad, group, ctx.inv_tau, ctx.chunk_elements, grad_ap[group.rows])
        valid = _has_positive(ctx.groups, grad.shape[0], grad.device)
        return _zero_rows_outside(valid, grad), None, None, None, None


class _WeightedAPSumFunction(torch.autograd.Function):
    """``sim [B, R] -> sum_q weight_q AP_q`` (scalar), ``weight [B]`` a constant.

    The gradient is computed in the forward pass from the same sigmoid blocks
    (one pass instead of forward + recomputing backward) and kept for backward.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sim: Tensor,
        groups: list[_Group],
        weight: Tensor,
        inv_tau: float,
        exclude_self: bool,
        chunk_elements: int,
    ) -> Tensor:
        with torch.autocast(device_type=sim.device.type, enabled=False):
            grad = _logits(sim.detach(), inv_tau, exclude_self)  # rows become dL/dS
            total = _weighted_ap_sum(grad, groups, weight, inv_tau, chunk_elements)
        valid = _has_positive(groups, grad.shape[0], grad.device)
        ctx.save_for_backward(_zero_rows_outside(valid, grad))
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        if grad_output.device.type == "cpu" and float(grad_output) == 1.0:
            return grad, None, None, None, None, None  # no B x R copy
        return grad * grad_output, None, None, None, None, None


def _weighted_ap_sum(
    logits: Tensor,
    groups: list[_Group],
    weight: Tensor,
    inv_tau: float,
    chunk_elements: int,
) -> Tensor:
    """``sum_q weight_q AP_q`` from ``logits [B, R]`` (:func:`_logits`), with its
    ``dL/dS`` written over the rows of ``logits`` that belong to a group (each
    row is read before it is written, and only its own chunk writes it)."""
    total = logits.new_zeros(())
    for group in groups:
        group_weight = weight[group.rows]
        ap = _group_ap(logits, group, inv_tau, chunk_elements, group_weight)
        total += (ap * group_weight).sum()
    return total


class _GramWeightedAPSumFunction(torch.autograd.Function):
    """``x [B, D] -> sum_q weight_q AP_q`` on ``S = x x^T`` (no extra references):
    ``S / tau`` comes from :func:`scaled_gram` (half a matmul), ``dL/dS`` is written over
    it (one ``B x B`` matrix) and the backward is ``(G + G^T) x``, symmetrized in
    place. ``x`` is in the compute dtype."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, labels: Tensor, include_self: bool, inv_tau: float
    ) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            # S / tau (its rows become dL/dS)
            grad = _exclude_self_(scaled_gram(x, inv_tau), not include_self)
            pairs = PairBatch(sim=grad, labels=labels, ref_labels=labels)
            groups = _groups_by_count(*pairs.positive_index(), include_self)
            valid = _has_positive(groups, x.shape[0], x.device)
            num_valid = int(valid.sum())
            weight = valid.to(x.dtype) * (-1.0 / max(num_valid, 1))
            total = _weighted_ap_sum(grad, groups, weight, inv_tau, DEFAULT_CHUNK_ELEMENTS)
        ctx.save_for_backward(x, _zero_rows_outside(valid, grad))
        ctx.symmetric = False
        return total + 1.0 if num_valid else total * 0.0

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, grad = ctx.saved_tensors
        if not ctx.symmetric:  # a second backward (retain_graph) reuses it
            symmetrize_(grad)
            ctx.symmetric = True
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (grad @ x).mul_(grad_output), None, None, None


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
    _check_inputs(sim, pos, temperature)
    groups = _positive_groups(pos, include_self)
    ap = _SmoothAPFunction.apply(
        sim, groups, 1.0 / temperature, not include_self, max(1, int(chunk_elements))
    )
    return ap, _has_positive(groups, pos.shape[0], pos.device)


def _check_inputs(sim: Tensor, pos: Tensor, temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if pos.shape != sim.shape or pos.dtype != torch.bool:
        raise ValueError(
            f"pos must be a bool tensor shaped like sim {tuple(sim.shape)}, "
            f"got {pos.dtype} {tuple(pos.shape)}"
        )


def _has_positive(groups: list[_Group], num_queries: int, device: torch.device) -> Tensor:
    """``valid [B]`` bool: the queries that are in a group (have a positive)."""
    valid = torch.zeros(num_queries, dtype=torch.bool, device=device)
    for group in groups:
        valid[group.rows] = True
    return valid


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

    def gram_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        """Without references ``S = x x^T`` is made inside the loss and its gradient
        written over it (one ``B x B`` matrix)."""
        return _GramWeightedAPSumFunction.apply(
            x, labels, self.include_self, 1.0 / self.temperature
        )

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        """``1 - mean AP`` over the queries with a positive, as ``1 + sum_q w_q AP_q``
        with ``w_q = -1 / #valid`` (so backward passes ``dL/dS`` through uncopied)."""
        sim = pairs.sim
        groups = _groups_by_count(*pairs.positive_index(), self.include_self)
        valid = _has_positive(groups, pairs.num_queries, sim.device)
        num_valid = int(valid.sum())
        if num_valid == 0:
            return pairs.zero()
        weight = valid.to(sim.dtype) * (-1.0 / num_valid)
        weighted = _WeightedAPSumFunction.apply(
            sim,
            groups,
            weight,
            1.0 / self.temperature,
            not self.include_self,
            DEFAULT_CHUNK_ELEMENTS,
        )
        return 1.0 + weighted

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_self={self.include_self}"
