"""Lifted structure losses (Oh Song et al. 2016) in similarity form.

``LiftedStructureLoss`` (the original): for every positive pair ``(i, j)``::

    J_ij = log( sum_{k in N_i} e^{margin + S_ik} + sum_{l in N_j} e^{margin + S_jl} ) - S_ij
    L = 1/(2|P|) sum_{(i, j) in P} [J_ij]_+^2

with ``P`` the ordered positive pairs of the batch (each unordered pair counted
twice, with equal ``J``). It needs each positive's own negatives, so it takes no
extra references. ``J`` is computed for the positives only, from their columns
(``O(B K)``); the ``B x B`` work is one masked softmax over the negatives. With ``n_i = log sum_{k in N_i} e^{margin + S_ik}``,
``J_ij = logaddexp(n_i, n_j) - S_ij``; the gradient is ``-g_ij`` on positives
(``g = [J]_+ / |P|``) and ``c_i softmax_{N_i}(S_ik)`` on negatives with
``c_i = 2 sum_j g_ij sigmoid(n_i - n_j)`` (``S`` is symmetric, so ``J_ji = J_ij``).

``GeneralizedLiftedStructureLoss`` (the MS paper's form)::

    L = 1/B sum_i [ log sum_{k in P_i} e^{margin - S_ik} + log sum_{k in N_i} e^{S_ik} ]_+

(anchors with no positive or no negative add 0; averaged over all B anchors).
Its gradient is ``-softmax_{P_i}(margin - S)`` on positives and
``softmax_{N_i}(S)`` on negatives of the anchors whose bracket is ``>= 0``, over B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock, block_rows
from retrievalkit.losses.registry import register_loss


def masked_logsumexp(values: Tensor, include: Tensor, exclude: Tensor) -> tuple[Tensor, Tensor]:
    """Per row ``log sum exp(values)`` over the entries where ``include`` (0/1, same
    shape; ``exclude = 1 - include``) is 1: ``[b, 1]``, and the softmax ``[b, R]``
    (0 at excluded entries).

    The row maximum is taken with excluded entries pushed to the dtype's lowest
    value by an addition (exact for the others). The exponent is clamped to
    ``[-80, 0]`` before ``exp`` and multiplied by ``include``: on CPU ``exp`` of
    an underflowing argument (below -87 in float32) costs ~60x a normal one, and
    a weight below ``e^-80`` (1.8e-35) is invisible next to the row's largest
    weight 1. An empty row gives about ``finfo.min`` (finite, so no NaN) and a
    zero softmax: callers mask such rows out.
    """
    top = torch.add(values, exclude, alpha=torch.finfo(values.dtype).min).amax(dim=1, keepdim=True)
    weights = (values - top).clamp_(-80.0, 0.0).exp_().mul_(include)
    total = weights.sum(dim=1, keepdim=True).clamp_min_(torch.finfo(values.dtype).tiny)
    return top + total.log(), weights.div_(total)


# Up to this |S| the negatives' e^S need no shift by their row maximum: e^{+-20}
# is far inside float32's range, and a row sum of R terms stays finite for R < e^68.
UNSHIFTED_LIMIT = 20.0


def exp_negatives_(block: RowBlock, shift: bool) -> tuple[Tensor, Tensor]:
    """Overwrite ``block.sim [b, R]`` (a scratch copy) with ``e^{S - top}`` on each
    row's negatives and 0 on its same-label pairs; return ``top [b, 1]`` and
    ``total [b, 1]`` (the row's sum, at least ``finfo.tiny``):
    ``log sum_N e^S = top + log(total)`` and ``softmax_N(S) = block.sim / total``.

    ``shift=False`` (``|S| <= UNSHIFTED_LIMIT``, e.g. unit embeddings): ``top = 0``,
    two passes over the block (``exp``, sum). ``shift=True``: ``top`` is the row's
    largest negative similarity (``finfo.min`` if none), two more passes (max,
    subtract). The same-label pairs are set by index (``O(b K)``): with a shift
    to the lowest value before the maximum and to 0 before ``exp`` (on CPU ``exp``
    of an underflowing argument costs ~60x a normal one); to 0 after ``exp``.
    """
    sim, same = block.sim, block.same_index
    if shift:
        sim[same] = torch.finfo(sim.dtype).min
        top = sim.amax(dim=1, keepdim=True)
        sim.sub_(top)
        sim[same] = 0.0
    else:
        top = sim.new_zeros(sim.shape[0], 1)
    sim.exp_()
    sim[same] = 0.0
    return top, sim.sum(dim=1, keepdim=True).clamp_min_(torch.finfo(sim.dtype).tiny)


@dataclass(frozen=True)
class _LiftedTerms:
    """Per anchor: its share of the loss ``row_value [B]``, its positives' columns
    ``columns [B, K]`` with ``grad_pos [B, K]`` (``g = [J]_+ / |P|``, 0 on padding)
    and the factor ``coeff [B, 1]`` that turns its negatives' weights (left in
    ``sim`` by :func:`exp_negatives_`) into their gradient ``c_i softmax``."""

    row_value: Tensor
    columns: Tensor
    grad_pos: Tensor
    coeff: Tensor
    pair_sum: Tensor | None


def pair_sum_buffer(pairs: PairBatch, sim: Tensor, shift: bool) -> Tensor | None:
    """For ``S = x x^T`` with unshifted weights (``e^S``, symmetric): one block's
    buffer for ``u_i + u_j`` (:func:`symmetric_weights_`); else ``None`` (the
    blocks write ``G`` and the backward symmetrizes it)."""
    if not pairs.gram or shift:
        return None
    return sim.new_empty(min(block_rows(sim.shape[1]), pairs.num_queries), sim.shape[1])


def symmetric_weights_(block: RowBlock, u: Tensor, buffer: Tensor) -> Tensor:
    """``(u_i + u_j) e^{S_ij}`` over the block's weights ``e^{S_ij}`` (left in
    ``block.sim`` by :func:`exp_negatives_` without a shift): the negatives' part of
    ``G + G^T`` when ``G_ij = u_i e^{S_ij}`` and ``S`` is symmetric. ``u [B, 1]``."""
    pair_sum = torch.add(u[block.rows], u.view(1, -1), out=buffer[: block.sim.shape[0]])
    return block.sim.mul_(pair_sum)


@register_loss("lifted")
class LiftedStructureLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar`` (no extra references)."""

    accepts_references = False
    in_place = True  # see BlockwiseLoss

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def prepare(self, pairs: PairBatch, sim: Tensor) -> _LiftedTerms:
        """``n_i`` for every anchor (a first pass over the blocks, which leaves the
        negatives' weights in ``sim``), then the terms of the positives only, from
        their columns (``O(B K)``, K = most positives)."""
        columns, num_pos = pairs.positive_index()
        pos_sim = sim.gather(1, columns)  # before the pass overwrites sim
        shift = not pairs.abs_bound(sim) <= UNSHIFTED_LIMIT
        top = sim.new_empty(pairs.num_queries, 1)
        total = torch.empty_like(top)
        for block in pairs.blocks(sim, same_pairs=True):
            top[block.rows], total[block.rows] = exp_negatives_(block, shift)
        valid = (torch.arange(columns.shape[1], device=sim.device) < num_pos.unsqueeze(1)).to(
            sim.dtype
        )
        inv_pos = 1.0 / max(int(num_pos.sum()), 1)
        neg_lse = ((top + self.margin) + total.log())[:, 0]
        own, other = neg_lse.unsqueeze(1), neg_lse[columns]
        hinge = (torch.logaddexp(own, other) - pos_sim).clamp_(min=0).mul_(valid)
        row_value = (hinge * hinge).sum(dim=1) * (inv_pos / 2)
        grad_pos = hinge.mul_(inv_pos)  # g = dL/dJ
        coeff = 2 * (grad_pos * torch.sigmoid(own - other)).sum(dim=1, keepdim=True)
        buffer = pair_sum_buffer(pairs, sim, shift)
        if buffer is not None:  # G + G^T: -2 g on the positives (J and g are symmetric)
            grad_pos.mul_(2)
        return _LiftedTerms(row_value, columns, grad_pos, coeff.div_(total), buffer)

    def symmetric_gradient(self, prepared: _LiftedTerms) -> bool:
        return prepared.pair_sum is not None

    def block_loss(self, block: RowBlock, prepared: _LiftedTerms) -> tuple[Tensor, Tensor]:
        rows, t = block.rows, prepared
        # rows without negatives have no positive with a negative either: coeff = 0
        if t.pair_sum is None:
            grad = block.sim.mul_(t.coeff[rows])  # c_i softmax_N, written over sim
        else:
            grad = symmetric_weights_(block, t.coeff, t.pair_sum)
        grad.scatter_add_(1, t.columns[rows], -t.grad_pos[rows])  # padding adds 0
        return t.row_value[rows].sum(), grad

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@dataclass(frozen=True)
class _SymmetricTerms:
    """The generalized lifted loss on ``S = x x^T`` written as ``G + G^T``: per
    anchor its part of the loss ``row_value [B]``, ``u [B, 1]`` (``G_ij = u_i e^{S_ij}``
    on negatives), the positives' gradient ``grad_pos [B, K]`` (added both ways by
    :meth:`GeneralizedLiftedStructureLoss.finish`) and the ``u_i + u_j`` buffer."""

    row_value: Tensor
    u: Tensor
    grad_pos: Tensor
    pair_sum: Tensor


@dataclass(frozen=True)
class _GeneralizedTerms:
    """Per anchor its positives' ``columns [B, K]``, ``log sum_P e^{margin - S}``
    ``pos_lse [B, 1]`` and softmax ``pos_softmax [B, K]`` (0 on padding), whether it
    has a positive and a negative ``has_both [B, 1]``, the loss's ``scale`` 1/B, and
    whether the negatives' exponentials need a ``shift`` (see :func:`exp_negatives_`)."""

    columns: Tensor
    pos_lse: Tensor
    pos_softmax: Tensor
    has_both: Tensor
    scale: float
    shift: bool
    symmetric: _SymmetricTerms | None


@register_loss("lifted_generalized")
class GeneralizedLiftedStructureLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``."""

    in_place, same_pairs = True, True  # see BlockwiseLoss

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def prepare(self, pairs: PairBatch, sim: Tensor) -> _GeneralizedTerms:
        """The positive half of every bracket from the positives' columns (``O(B K)``)."""
        columns, num_pos = pairs.positive_index()
        valid = (torch.arange(columns.shape[1], device=sim.device) < num_pos.unsqueeze(1)).to(
            sim.dtype
        )
        pos_lse, pos_softmax = masked_logsumexp(
            self.margin - sim.gather(1, columns), valid, 1 - valid
        )
        _, num_neg = pairs.pair_counts()
        has_both = ((num_pos > 0) & (num_neg > 0)).unsqueeze(1)
        shift = not pairs.abs_bound(sim) <= UNSHIFTED_LIMIT
        scale = 1.0 / pairs.num_queries
        buffer = pair_sum_buffer(pairs, sim, shift)
        terms = _GeneralizedTerms(columns, pos_lse, pos_softmax, has_both, scale, shift, None)
        if buffer is None:
            return terms
        # G + G^T needs every row's u_j: a first pass leaves e^S in sim
        top = sim.new_empty(pairs.num_queries, 1)
        total = torch.empty_like(top)
        for block in pairs.blocks(sim, same_pairs=True):
            top[block.rows], total[block.rows] = exp_negatives_(block, shift)
        value, coeff = self._brackets(terms, slice(0, pairs.num_queries), top, total)
        grad_pos = pos_softmax * -coeff
        symmetric = _SymmetricTerms(value, coeff / total, grad_pos, buffer)
        return _GeneralizedTerms(columns, pos_lse, pos_softmax, has_both, scale, shift, symmetric)

    def _brackets(
        self, terms: _GeneralizedTerms, rows: slice, top: Tensor, total: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per anchor of ``rows`` its part of the loss ``[b]`` and ``coeff [b, 1]`` (1/B
        where its bracket is active, else 0), from its negatives' ``top + log(total)``."""
        bracket = terms.pos_lse[rows] + (top + total.log())
        active = terms.has_both[rows] & (bracket >= 0)  # clamp(min=0) passes the gradient at 0
        value = torch.where(active, bracket, 0.0)[:, 0] * terms.scale
        return value, active.to(top.dtype) * terms.scale

    def symmetric_gradient(self, prepared: _GeneralizedTerms) -> bool:
        return prepared.symmetric is not None

    def block_loss(self, block: RowBlock, prepared: _GeneralizedTerms) -> tuple[Tensor, Tensor]:
        """The negatives' softmax is written over ``block.sim`` (a scratch copy) and
        scaled into the gradient in place; the positives' part is a scatter (for
        ``G + G^T``: both ways, after the last block)."""
        rows, sym = block.rows, prepared.symmetric
        if sym is not None:
            return sym.row_value[rows].sum(), symmetric_weights_(block, sym.u, sym.pair_sum)
        top, total = exp_negatives_(block, prepared.shift)
        value, coeff = self._brackets(prepared, rows, top, total)
        grad = block.sim.mul_(coeff / total)
        return value.sum(), grad.scatter_add_(
            1, prepared.columns[rows], prepared.pos_softmax[rows] * -coeff
        )

    def finish(self, grad: Tensor, prepared: _GeneralizedTerms) -> None:
        """For ``G + G^T``: the positives' gradient at ``(i, j)`` and at ``(j, i)``."""
        if prepared.symmetric is None:
            return None
        columns, values = prepared.columns, prepared.symmetric.grad_pos  # padding: value 0
        anchors = torch.arange(columns.shape[0], device=columns.device).unsqueeze(1)
        anchors = anchors.expand_as(columns)
        grad.index_put_((anchors, columns), values, accumulate=True)
        grad.index_put_((columns, anchors), values, accumulate=True)
        return None

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
