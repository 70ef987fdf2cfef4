"""Triplet margin loss in similarity form: ``[S_an - S_ap + margin]_+``.

``mining="all"``: mean over every valid triplet (anchor, positive, negative) of
the batch; computed per anchor as ``[K, R]`` hinges (K positives of the anchor),
in chunks of anchors, never ``B x B x B``.
``mining="batch_hard"``: per anchor the hardest positive (lowest S) and the
hardest negative (highest S); mean over anchors that have both.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from retrievalkit.losses.core import PairBatch, PairLoss
from retrievalkit.losses.registry import register_loss

CHUNK_ELEMENTS = 1 << 22


@register_loss("triplet")
class TripletMarginLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B]) -> scalar``."""

    def __init__(
        self, margin: float = 0.1, mining: Literal["all", "batch_hard"] = "batch_hard"
    ) -> None:
        super().__init__()
        if mining not in ("all", "batch_hard"):
            raise ValueError(f"mining must be 'all' or 'batch_hard', got {mining!r}")
        self.margin, self.mining = margin, mining

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        if self.mining == "batch_hard":
            return self._batch_hard(pairs)
        return self._all_triplets(pairs)

    def _batch_hard(self, pairs: PairBatch) -> Tensor:
        sim = pairs.sim
        big = torch.finfo(sim.dtype).max
        hardest_pos = torch.where(pairs.pos, sim, big).amin(dim=1)
        hardest_neg = torch.where(pairs.neg, sim, -big).amax(dim=1)
        valid = pairs.pos.any(dim=1) & pairs.neg.any(dim=1)
        if not valid.any():
            return pairs.zero()
        hinge = (hardest_neg - hardest_pos + self.margin).clamp(min=0)
        return hinge[valid].mean()

    def _all_triplets(self, pairs: PairBatch) -> Tensor:
        sim, pos, neg = pairs.sim, pairs.pos, pairs.neg
        counts = pos.sum(dim=1)
        k = int(counts.max()) if counts.numel() else 0
        if k == 0 or not neg.any():
            return pairs.zero()
        # positives of each anchor, padded to k: [B, k] columns and validity
        order = torch.argsort(pos.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
        pos_valid = torch.gather(pos, 1, order)
        pos_sim = torch.gather(sim, 1, order)
        total = sim.new_zeros(())
        num_triplets = (counts * neg.sum(dim=1)).sum()
        rows_per_chunk = max(1, CHUNK_ELEMENTS // max(k * sim.shape[1], 1))
        for start in range(0, sim.shape[0], rows_per_chunk):
            rows = slice(start, start + rows_per_chunk)
            hinge = (sim[rows].unsqueeze(1) - pos_sim[rows].unsqueeze(2) + self.margin).clamp(min=0)
            mask = pos_valid[rows].unsqueeze(2) & neg[rows].unsqueeze(1)
            total = total + torch.where(mask, hinge, torch.zeros_like(hinge)).sum()
        return total / num_triplets.clamp(min=1)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining}"
