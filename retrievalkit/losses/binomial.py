"""Binomial deviance (Yi et al. 2014) in the MS paper's form:
``L = mean_{pos} log(1 + e^{-alpha (S - base)}) + mean_{neg} log(1 + e^{beta (S - base)})``
(alpha = 2, beta = 50, base = 0.5; each class of pair averaged separately).
Gradient: ``-alpha sigmoid(-alpha (S - base)) / |P|`` on positives,
``beta sigmoid(beta (S - base)) / |N|`` on negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock
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
        pos, neg = block.pos, block.neg
        shifted = block.sim - self.base
        # one logit per pair: -alpha (S - base) on positives, beta (S - base) elsewhere
        logits = torch.where(pos, shifted * -self.alpha, shifted * self.beta)
        zero = logits.new_zeros(())  # scalars take the logits' dtype
        weight = torch.where(pos, w_pos, torch.where(neg, w_neg, zero))
        value = (F.softplus(logits) * weight).sum()
        slope = torch.where(pos, -self.alpha, zero + self.beta)
        grad = torch.sigmoid(logits).mul_(weight).mul_(slope)
        return value, grad

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"
