"""Multi-Similarity loss and miner (Wang et al., CVPR 2019).

Mining (epsilon): for anchor ``i`` keep a negative ``j`` if
``S_ij + eps > min_{k in P_i} S_ik`` and a positive ``j`` if
``S_ij - eps < max_{k in N_i} S_ik``. Weighting on the kept pairs::

    L = 1/B sum_i { 1/alpha log(1 + sum_{kept pos} e^{-alpha (S_ik - base)})
                  + 1/beta  log(1 + sum_{kept neg} e^{ beta (S_ik - base)}) }

averaged over ALL ``B`` anchors (an anchor with nothing kept adds 0). The two
terms are independent, as in pytorch-metric-learning's ``MultiSimilarityLoss``
with its ``MultiSimilarityMiner`` (equal values); the authors' code instead
skips an anchor when either side is empty after mining.

Inputs must be L2-normalized (the paper's similarity is cosine); with
``check_norms=True`` the loss raises when a row norm is off by more than 1e-2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retrievalkit.losses.core import PairBatch, PairLoss, build_pairs
from retrievalkit.losses.reductions import log1p_sum_exp
from retrievalkit.losses.registry import register_loss


def mine_pairs(pairs: PairBatch, epsilon: float) -> tuple[Tensor, Tensor]:
    """Kept positive and negative masks ``[B, R]`` (bool) under the MS mining rule."""
    sim = pairs.sim.detach()
    big = torch.finfo(sim.dtype).max
    min_pos = torch.where(pairs.pos, sim, big).amin(dim=1, keepdim=True)
    max_neg = torch.where(pairs.neg, sim, -big).amax(dim=1, keepdim=True)
    keep_neg = pairs.neg & (sim + epsilon > min_pos)
    keep_pos = pairs.pos & (sim - epsilon < max_neg)
    return keep_pos, keep_neg


class MultiSimilarityMiner(nn.Module):
    """``miner(embeddings, labels, ref_embeddings=None, ref_labels=None) -> (keep_pos, keep_neg)``."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            pairs = build_pairs(embeddings, labels, ref_embeddings, ref_labels)
        return mine_pairs(pairs, self.epsilon)


@register_loss("multi_similarity")
class MultiSimilarityLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar``; ``epsilon=None`` disables mining."""

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float | None = 0.1,
        check_norms: bool = False,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.base, self.epsilon = alpha, beta, base, epsilon
        self.check_norms = check_norms

    def forward(self, embeddings: Tensor, labels: Tensor, ref_embeddings=None, ref_labels=None):
        if self.check_norms:
            norms = embeddings.detach().float().norm(dim=1)
            if (norms - 1).abs().max() > 1e-2:
                raise ValueError(
                    "MultiSimilarityLoss expects L2-normalized embeddings; row norms range "
                    f"{float(norms.min()):.3f}..{float(norms.max()):.3f}"
                )
        return super().forward(embeddings, labels, ref_embeddings, ref_labels)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        if self.epsilon is None:
            keep_pos, keep_neg = pairs.pos, pairs.neg
        else:
            keep_pos, keep_neg = mine_pairs(pairs, self.epsilon)
        shifted = pairs.sim - self.base
        pos_term = log1p_sum_exp(-self.alpha * shifted, keep_pos) / self.alpha
        neg_term = log1p_sum_exp(self.beta * shifted, keep_neg) / self.beta
        return (pos_term + neg_term).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, epsilon={self.epsilon}"
