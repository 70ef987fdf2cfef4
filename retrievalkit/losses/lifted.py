"""Lifted structure losses (Oh Song et al. 2016) in similarity form.

``LiftedStructureLoss`` (the original): for every positive pair ``(i, j)``::

    J_ij = log( sum_{k in N_i} e^{margin + S_ik} + sum_{l in N_j} e^{margin + S_jl} ) - S_ij
    L = 1/(2|P|) sum_{(i, j) in P} [J_ij]_+^2

with ``P`` the ordered positive pairs of the batch (each unordered pair counted
twice, with equal ``J``). It needs each positive's own negatives, so it takes no
extra references.

``GeneralizedLiftedStructureLoss`` (the MS paper's form)::

    L = 1/B sum_i [ log sum_{k in P_i} e^{margin - S_ik} + log sum_{k in N_i} e^{S_ik} ]_+

(anchors with no positive or no negative add 0; averaged over all B anchors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from retrievalkit.losses.core import PairBatch, PairLoss
from retrievalkit.losses.registry import register_loss


def masked_logsumexp(values: Tensor, mask: Tensor) -> Tensor:
    """Per row ``log sum_{mask} exp(values)``: ``[B, R] -> [B]``.

    An empty row gives about ``finfo.min`` (finite, so no NaN reaches the gradient).
    """
    masked = torch.where(mask, values, torch.full_like(values, torch.finfo(values.dtype).min))
    return torch.logsumexp(masked, dim=1)


@register_loss("lifted")
class LiftedStructureLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar`` (no extra references)."""

    accepts_references = False

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        sim, pos = pairs.sim, pairs.pos
        if not pos.any() or not pairs.neg.any():
            return pairs.zero()
        neg_lse = masked_logsumexp(self.margin + sim, pairs.neg)  # [B]
        # J over all (i, j): logaddexp of the two anchors' negative terms, minus S_ij
        j_all = torch.logaddexp(neg_lse.unsqueeze(1), neg_lse.unsqueeze(0)) - sim
        j_all = torch.where(pos, j_all, torch.zeros_like(j_all))
        return (j_all.clamp(min=0) ** 2).sum() / (2 * pos.sum())

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@register_loss("lifted_generalized")
class GeneralizedLiftedStructureLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar``."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        sim = pairs.sim
        valid = pairs.pos.any(dim=1) & pairs.neg.any(dim=1)
        if not valid.any():
            return pairs.zero()
        pos_lse = masked_logsumexp(self.margin - sim, pairs.pos)
        neg_lse = masked_logsumexp(sim, pairs.neg)
        per_anchor = torch.where(valid, (pos_lse + neg_lse).clamp(min=0), torch.zeros_like(pos_lse))
        return per_anchor.sum() / sim.shape[0]

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
