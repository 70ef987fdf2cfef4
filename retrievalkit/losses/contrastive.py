"""Contrastive loss in similarity form (MS paper, section 3):
``L = mean_{pos} (1 - S) + mean_{neg} [S - margin]_+``.

Means are over all positive pairs and all negative pairs of the batch (self
pairs excluded); this equals pytorch-metric-learning's ``ContrastiveLoss(
pos_margin=1, neg_margin=margin, distance=CosineSimilarity(), reducer=
MeanReducer())`` (its default reducer averages over non-zero terms instead).
"""

from __future__ import annotations

from torch import Tensor

from retrievalkit.losses.core import PairBatch, PairLoss
from retrievalkit.losses.reductions import masked_mean
from retrievalkit.losses.registry import register_loss


@register_loss("contrastive")
class ContrastiveLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar``; ``margin`` is lambda."""

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        sim = pairs.sim
        pos_loss = masked_mean(1.0 - sim, pairs.pos)
        neg_loss = masked_mean((sim - self.margin).clamp(min=0), pairs.neg)
        return pos_loss + neg_loss

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
