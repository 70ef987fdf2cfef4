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
from retrievalkit.losses.core import PairBatch, RowBlock
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


@dataclass(frozen=True)
class _LiftedTerms:
    """Per anchor: its share of the loss ``row_value [B]``, its positives' columns
    ``columns [B, K]`` with ``grad_pos [B, K]`` (``g = [J]_+ / |P|``, 0 on padding)
    and the weight of its negatives' softmax ``coeff [B, 1]``."""

    row_value: Tensor
    columns: Tensor
    grad_pos: Tensor
    coeff: Tensor


@register_loss("lifted")
class LiftedStructureLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar`` (no extra references)."""

    accepts_references = False

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def prepare(self, pairs: PairBatch, sim: Tensor) -> _LiftedTerms:
        """``n_i`` for every anchor (a first pass over the blocks), then the terms of
        the positives only, from their columns (``O(B K)``, K = most positives)."""
        neg_lse = torch.empty(pairs.num_queries, dtype=sim.dtype, device=sim.device)
        for block in pairs.blocks(sim):
            neg_lse[block.rows] = masked_logsumexp(
                block.sim + self.margin, block.neg_float, block.same_float
            )[0][:, 0]
        columns, num_pos = pairs.positive_index()
        valid = (torch.arange(columns.shape[1], device=sim.device) < num_pos.unsqueeze(1)).to(
            sim.dtype
        )
        inv_pos = 1.0 / max(int(num_pos.sum()), 1)
        own, other = neg_lse.unsqueeze(1), neg_lse[columns]
        hinge = (torch.logaddexp(own, other) - sim.gather(1, columns)).clamp_(min=0).mul_(valid)
        row_value = (hinge * hinge).sum(dim=1) * (inv_pos / 2)
        grad_pos = hinge.mul_(inv_pos)  # g = dL/dJ
        coeff = 2 * (grad_pos * torch.sigmoid(own - other)).sum(dim=1, keepdim=True)
        return _LiftedTerms(row_value, columns, grad_pos, coeff)

    def block_loss(self, block: RowBlock, prepared: _LiftedTerms) -> tuple[Tensor, Tensor]:
        rows = block.rows
        _, softmax = masked_logsumexp(block.sim + self.margin, block.neg_float, block.same_float)
        # rows without negatives have no positive with a negative either: coeff = 0
        grad = softmax.mul_(prepared.coeff[rows])
        grad.scatter_add_(1, prepared.columns[rows], -prepared.grad_pos[rows])  # padding adds 0
        return prepared.row_value[rows].sum(), grad

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@dataclass(frozen=True)
class _GeneralizedTerms:
    """Per anchor its positives' ``columns [B, K]``, ``log sum_P e^{margin - S}``
    ``pos_lse [B, 1]`` and softmax ``pos_softmax [B, K]`` (0 on padding), whether it
    has a positive and a negative ``has_both [B, 1]``, and the loss's ``scale`` 1/B."""

    columns: Tensor
    pos_lse: Tensor
    pos_softmax: Tensor
    has_both: Tensor
    scale: float


@register_loss("lifted_generalized")
class GeneralizedLiftedStructureLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``."""

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
        return _GeneralizedTerms(columns, pos_lse, pos_softmax, has_both, 1.0 / pairs.num_queries)

    def block_loss(self, block: RowBlock, prepared: _GeneralizedTerms) -> tuple[Tensor, Tensor]:
        rows, scale = block.rows, prepared.scale
        neg_lse, neg_softmax = masked_logsumexp(block.sim, block.neg_float, block.same_float)
        bracket = prepared.pos_lse[rows] + neg_lse
        active = prepared.has_both[rows] & (bracket >= 0)  # clamp(min=0) passes the gradient at 0
        value = torch.where(active, bracket, 0.0).sum() * scale
        coeff = active.to(block.sim.dtype) * scale  # [b, 1], in sim's dtype
        grad = neg_softmax.mul_(coeff)
        return value, grad.scatter_add_(
            1, prepared.columns[rows], prepared.pos_softmax[rows] * -coeff
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
