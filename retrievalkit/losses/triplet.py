"""Triplet margin loss in similarity form: ``[S_an - S_ap + margin]_+``.

``mining="batch_hard"`` (default): per anchor the hardest positive (lowest S,
the first one on ties) and the hardest negative (highest S); mean over the
anchors that have both. The hardest pairs are found on a detached ``S`` block by
block, then only their ``2 B`` similarities are recomputed with gradients, so
the backward pass costs ``O(B D)``, not a ``B x R`` matmul.

``mining="all"``: mean over every valid triplet (anchor, positive, negative)
of the batch, computed block by block of anchors as ``K`` passes over ``[b, R]``
(``K`` = most positives of one anchor), never ``B x B x B``. Gradient: each
negative gets ``+1/T`` per positive it violates, each positive ``-1/T`` per
negative violating it (``T`` = number of triplets).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import (
    PairBatch,
    RowBlock,
    build_pairs,
    compute_dtype,
    pml_alias,
)
from retrievalkit.losses.registry import register_loss


def positive_columns(pos: Tensor) -> tuple[Tensor, Tensor]:
    """Columns of each row's positives, padded: ``idx [b, K]`` long and ``valid [b, K]`` bool."""
    counts = pos.sum(dim=1)
    width = int(counts.max()) if counts.numel() else 0
    rows, cols = pos.nonzero(as_tuple=True)  # row-major
    slot = torch.arange(rows.shape[0], device=pos.device) - (counts.cumsum(0) - counts)[rows]
    idx = torch.zeros(pos.shape[0], width, dtype=torch.long, device=pos.device)
    idx[rows, slot] = cols
    valid = torch.arange(width, device=pos.device) < counts.unsqueeze(1)
    return idx, valid


@torch.no_grad()
def hardest_pairs(pairs: PairBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor the column of its hardest positive and negative ``[B]`` (long), and
    whether it has both ``[B]`` (bool)."""
    sim = pairs.sim.detach()
    big = torch.finfo(sim.dtype).max
    num = pairs.num_queries
    pos_idx = torch.zeros(num, dtype=torch.long, device=sim.device)
    neg_idx = torch.zeros_like(pos_idx)
    valid = torch.zeros(num, dtype=torch.bool, device=sim.device)
    for block in pairs.blocks(sim):
        # other entries pushed to +-finfo.max by an addition (a 0/1 blend is
        # vectorized on CPU, torch.where is not); kept entries are unchanged
        not_pos = torch.sub(1, block.pos_float)
        pos_idx[block.rows] = torch.add(block.sim, not_pos, alpha=big).argmin(dim=1)
        neg_idx[block.rows] = torch.add(block.sim, block.same_float, alpha=-big).argmax(dim=1)
        valid[block.rows] = (not_pos.amin(dim=1) == 0) & (block.same_float.amin(dim=1) == 0)
    return pos_idx, neg_idx, valid


@register_loss("triplet")
class TripletMarginLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``.

    Args:
        margin: ``m`` in ``[S_an - S_ap + m]_+``.
        mining: ``"batch_hard"`` or ``"all"`` (see the module docstring).
    """

    def __init__(
        self, margin: float = 0.1, mining: Literal["all", "batch_hard"] = "batch_hard"
    ) -> None:
        super().__init__()
        if mining not in ("all", "batch_hard"):
            raise ValueError(f"mining must be 'all' or 'batch_hard', got {mining!r}")
        self.margin, self.mining = margin, mining

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_emb: Tensor | None = None,
    ) -> Tensor:
        ref_embeddings = pml_alias(ref_embeddings, ref_emb)
        if self.mining == "all":
            return super().forward(embeddings, labels, ref_embeddings, ref_labels)
        with torch.no_grad():
            detached_refs = None if ref_embeddings is None else ref_embeddings.detach()
            pairs = build_pairs(embeddings.detach(), labels, detached_refs, ref_labels)
        pos_idx, neg_idx, valid = hardest_pairs(pairs)
        refs = embeddings
        if ref_embeddings is not None:
            refs = torch.cat([embeddings, ref_embeddings.to(embeddings.dtype)])
        dtype = compute_dtype(embeddings.dtype)
        queries, refs = embeddings.to(dtype), refs.to(dtype)
        sim_pos = (queries * refs[pos_idx]).sum(dim=1)
        sim_neg = (queries * refs[neg_idx]).sum(dim=1)
        return self._mean_hinge(sim_pos, sim_neg, valid)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        if self.mining == "all":
            return super().loss_from_pairs(pairs)
        pos_idx, neg_idx, valid = hardest_pairs(pairs)
        sim_pos = pairs.sim.gather(1, pos_idx.unsqueeze(1)).squeeze(1)
        sim_neg = pairs.sim.gather(1, neg_idx.unsqueeze(1)).squeeze(1)
        return self._mean_hinge(sim_pos, sim_neg, valid)

    def _mean_hinge(self, sim_pos: Tensor, sim_neg: Tensor, valid: Tensor) -> Tensor:
        """Mean of ``[S_an - S_ap + m]_+`` over valid anchors (0, in the graph, if none)."""
        hinge = (sim_neg - sim_pos + self.margin).clamp(min=0)
        return torch.where(valid, hinge, 0.0).sum() / valid.sum().clamp(min=1)

    def prepare(self, pairs: PairBatch, sim: Tensor) -> float:
        """``1 / T`` for ``mining="all"`` (T = number of triplets, 1 if none)."""
        num_pos, num_neg = pairs.pair_counts()
        return 1.0 / max(int((num_pos * num_neg).sum()), 1)

    def block_loss(self, block: RowBlock, prepared: float) -> tuple[Tensor, Tensor]:
        sim, neg = block.sim, block.neg
        idx, valid = positive_columns(block.pos)
        sim_pos = sim.gather(1, idx)
        value = sim.new_zeros(())
        grad = torch.zeros_like(sim)
        pos_grad = torch.zeros_like(sim_pos)
        for k in range(idx.shape[1]):  # the k-th positive of every anchor of the block
            hinge = sim - sim_pos[:, k : k + 1] + self.margin
            active = neg & (hinge >= 0) & valid[:, k : k + 1]  # clamp passes the gradient at 0
            value += torch.where(active, hinge, 0.0).sum()
            grad += active
            pos_grad[:, k] = -active.sum(dim=1)
        grad.scatter_add_(1, idx, pos_grad)  # padded slots add 0
        return value * prepared, grad.mul_(prepared)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining}"
