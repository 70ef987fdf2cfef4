"""Contrastive loss in similarity form (MS paper, section 3):
``L = mean_{pos} (1 - S) + mean_{neg} [S - margin]_+``.

Means are over all positive pairs and all negative pairs of the batch (self
pairs excluded); this equals pytorch-metric-learning's ``ContrastiveLoss(
pos_margin=1, neg_margin=margin, distance=CosineSimilarity(), reducer=
MeanReducer())`` (its default reducer averages over non-zero terms instead).
Gradient: ``-1/|P|`` on positives, ``1/|N|`` on negatives with ``S >= margin``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock
from retrievalkit.losses.registry import register_loss


@register_loss("contrastive")
class ContrastiveLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``.

    Args:
        margin: ``lambda``, the similarity above which a negative costs.
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def prepare(self, pairs: PairBatch, sim: Tensor) -> tuple[float, float]:
        """``(1/|P|, 1/|N|)`` (1 when a set is empty: its sum is 0 anyway)."""
        num_pos, num_neg = pairs.pair_counts()
        return 1.0 / max(int(num_pos.sum()), 1), 1.0 / max(int(num_neg.sum()), 1)

    def block_loss(self, block: RowBlock, prepared: tuple[float, float]) -> tuple[Tensor, Tensor]:
        w_pos, w_neg = prepared
        sim, pos = block.sim, block.pos
        hinge = sim - self.margin
        active = block.neg & (hinge >= 0)
        value = w_pos * torch.where(pos, 1.0 - sim, 0.0).sum()
        value = value + w_neg * torch.where(active, hinge, 0.0).sum()
        zero = sim.new_zeros(())  # scalars take sim's dtype (float64 stays exact)
        grad = torch.where(pos, -w_pos, torch.where(active, w_neg, zero))
        return value, grad

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
