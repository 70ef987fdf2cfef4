"""Binomial deviance (Yi et al. 2014) in the MS paper's form:
``L = mean_{pos} log(1 + e^{-alpha (S - base)}) + mean_{neg} log(1 + e^{beta (S - base)})``
(alpha = 2, beta = 50, base = 0.5; each class of pair averaged separately).
Gradient: ``-alpha sigmoid(-alpha (S - base)) / |P|`` on positives,
``beta sigmoid(beta (S - base)) / |N|`` on negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock
from retrievalkit.losses.fastmath import softplus
from retrievalkit.losses.registry import register_loss


@register_loss("binomial")
class BinomialDevianceLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``."""

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta, self.base = alpha, beta, base

    def prepare(self, pairs: PairBatch, sim: Tensor) -> tuple[float, float]:
        """``(1/|P|, 1/|N|)`` (1 when a set is empty: its sum is 0 anyway)."""
        num_pos, num_neg = pairs.pair_counts()
        return 1.0 / max(int(num_pos.sum()), 1), 1.0 / max(int(num_neg.sum()), 1)

    def block_loss(self, block: RowBlock, prepared: tuple[float, float]) -> tuple[Tensor, Tensor]:
        w_pos, w_neg = prepared
        pos, neg = block.pos_float, block.neg_float
        shifted = block.sim - self.base
        # one logit per pair: -alpha (S - base) on positives, beta (S - base) on
        # negatives, 0 on self-pairs; blended with 0/1 masks (x * 0 + y is exact)
        logits = torch.mul(shifted, neg).mul_(self.beta)
        logits.add_(shifted.mul_(pos), alpha=-self.alpha)
        weight = torch.mul(pos, w_pos).add_(neg, alpha=w_neg)
        value = torch.vdot(softplus(logits).view(-1), weight.view(-1))
        # dL/dS = sigmoid(logit) * weight * slope (slope -alpha or beta)
        slope = weight.mul_(neg).mul_(self.beta).sub_(pos, alpha=w_pos * self.alpha)
        return value, torch.sigmoid_(logits).mul_(slope)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"
