"""Binomial deviance (Yi et al. 2014) in the MS paper's form:
``L = mean_{pos} log(1 + e^{-alpha (S - base)}) + mean_{neg} log(1 + e^{beta (S - base)})``
(alpha = 2, beta = 50, base = 0.5; each class of pair averaged separately).
Gradient: ``-alpha sigmoid(-alpha (S - base)) / |P|`` on positives,
``beta sigmoid(beta (S - base)) / |N|`` on negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock, same_label_pairs
from retrievalkit.losses.fastmath import softplus
from retrievalkit.losses.registry import register_loss


@dataclass(frozen=True)
class _BinomialTerms:
    """``w_neg = 1/|N|``; per anchor its positives' loss ``row_value [B]`` (already
    weighted), their ``columns [B, K]`` and gradient ``grad_pos [B, K]`` (0 on
    padding); the same-label pairs ``(same_rows, same_cols)`` in row order; the
    gradient's ``factor`` (2 for ``S = x x^T``: ``G`` is symmetric, ``G + G^T = 2 G``)."""

    w_neg: float
    row_value: Tensor
    columns: Tensor
    grad_pos: Tensor
    same_rows: Tensor
    same_cols: Tensor
    factor: float


@register_loss("binomial")
class BinomialDevianceLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``."""

    in_place = True  # see BlockwiseLoss

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta, self.base = alpha, beta, base

    def prepare(self, pairs: PairBatch, sim: Tensor) -> _BinomialTerms:
        """The positives' terms from their columns (``O(B K)``) and the same-label
        pairs to exclude from the dense pass over the negatives."""
        num_pos, num_neg = pairs.pair_counts()
        w_pos, w_neg = 1.0 / max(int(num_pos.sum()), 1), 1.0 / max(int(num_neg.sum()), 1)
        columns, count = pairs.positive_index()
        valid = (torch.arange(columns.shape[1], device=sim.device) < count.unsqueeze(1)).to(
            sim.dtype
        )
        logits = (sim.gather(1, columns) - self.base) * -self.alpha
        row_value = (F.softplus(logits) * valid).sum(dim=1) * w_pos
        factor = 2.0 if pairs.gram else 1.0  # G_ij depends on S_ij only: G + G^T = 2 G
        grad = torch.sigmoid(logits).mul_(valid).mul_(-self.alpha * w_pos * factor)
        same_rows, same_cols = same_label_pairs(pairs.labels, pairs.ref_labels)
        return _BinomialTerms(w_neg, row_value, columns, grad, same_rows, same_cols, factor)

    def symmetric_gradient(self, prepared: _BinomialTerms) -> bool:
        return prepared.factor == 2.0

    def block_loss(self, block: RowBlock, prepared: _BinomialTerms) -> tuple[Tensor, Tensor]:
        """Every pair of the block as a negative, ``beta (S - base)``, with the same-label
        pairs pushed to the lowest logit (softplus and sigmoid 0); the positives'
        own terms are added from ``prepared``."""
        rows, t = block.rows, prepared
        logits = block.sim.sub_(self.base).mul_(self.beta)  # over the scratch copy of S
        bounds = torch.tensor([rows.start, rows.stop], device=t.same_rows.device)
        lo, hi = torch.searchsorted(t.same_rows, bounds).tolist()
        logits[t.same_rows[lo:hi] - rows.start, t.same_cols[lo:hi]] = torch.finfo(logits.dtype).min
        value = softplus(logits).sum() * t.w_neg + t.row_value[rows].sum()
        grad = torch.sigmoid_(logits).mul_(self.beta * t.w_neg * t.factor)
        return value, grad.scatter_add_(1, t.columns[rows], t.grad_pos[rows])  # padding adds 0

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}"
