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

    def prepare(self, pairs: PairBatch, sim: Tensor) -> tuple[float, float, float]:
        """``(1/|P|, 1/|N|)`` (1 when a set is empty: its sum is 0 anyway) and the
        gradient's factor: 2 for ``S = x x^T`` (``G`` is symmetric, ``G + G^T = 2 G``)."""
        num_pos, num_neg = pairs.pair_counts()
        factor = 2.0 if pairs.gram else 1.0
        return 1.0 / max(int(num_pos.sum()), 1), 1.0 / max(int(num_neg.sum()), 1), factor

    def symmetric_gradient(self, prepared: tuple[float, float, float]) -> bool:
        return prepared[2] == 2.0

    def block_loss(
        self, block: RowBlock, prepared: tuple[float, float, float]
    ) -> tuple[Tensor, Tensor]:
        w_pos, w_neg, factor = prepared
        sim, pos = block.sim, block.pos_float
        # active negatives: S - margin >= 0 exactly when S >= margin; 0/1 masks and
        # dot products instead of masked copies (elementwise blends are vectorized)
        active = torch.ge(sim, self.margin, out=torch.empty_like(sim)).mul_(block.neg_float)
        num_active = active.sum()
        value = w_pos * (pos.sum() - torch.vdot(pos.view(-1), sim.reshape(-1)))
        value = value + w_neg * (
            torch.vdot(active.view(-1), sim.reshape(-1)) - self.margin * num_active
        )
        return value, active.mul_(w_neg * factor).sub_(pos, alpha=w_pos * factor)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
