"""Binomial deviance (Yi et al. 2014) in the MS paper's form:
``L = mean_{pos} log(1 + e^{-alpha (S - base)}) + mean_{neg} log(1 + e^{beta (S - base)})``
(alpha = 2, beta = 50, base = 0.5; each class of pair averaged separately).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from retrievalkit.losses.core import PairBatch, PairLoss
from retrievalkit.losses.reductions import masked_mean
from retrievalkit.losses.registry import register_loss


@register_loss("binomial")
class BinomialDevianceLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar``."""

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta, self.base = alpha, beta, base

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        sim = pairs.sim
        pos_loss = masked_mean(F.softplus(-self.alpha * (sim - self.base)), pairs.pos)
        neg_loss = masked_mean(F.softplus(self.beta * (sim - self.base)), pairs.neg)
        return pos_loss + neg_loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"
