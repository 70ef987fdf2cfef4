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

Inputs must be L2-normalized (the paper's similarity is cosine; the margins
``base`` and ``epsilon`` are on its scale). With ``check_norms=True`` the loss
raises when a row norm is off by more than 1e-2 (one cheap ``[B]`` check).

Computed block by block of anchors with the gradient in closed form
(``dL/dS = -w`` on kept positives and ``+w`` on kept negatives, ``w`` the
softmax-like weights of the paper); the log-sum-exps are shifted by their row
maximum, which mining already gives (``min_pos`` / ``max_neg``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from retrievalkit.losses.blockwise import BlockwiseLoss
from retrievalkit.losses.core import PairBatch, RowBlock, block_rows, build_pairs
from retrievalkit.losses.registry import register_loss


def hardest_similarities(block: RowBlock) -> tuple[Tensor, Tensor]:
    """Per row the lowest positive and the highest negative similarity, ``[b, 1]`` each.

    A row without positives gets ``finfo.max``, without negatives ``-finfo.max``
    (the other entries are pushed there by an addition: exact for the kept ones,
    and vectorized on CPU where ``torch.where`` is not).
    """
    sim = block.sim.detach()
    big = torch.finfo(sim.dtype).max
    min_pos = torch.add(sim, torch.sub(1, block.pos_float), alpha=big).amin(dim=1, keepdim=True)
    max_neg = torch.add(sim, block.same_float, alpha=-big).amax(dim=1, keepdim=True)
    return min_pos, max_neg


def mine_pairs_float(
    block: RowBlock, epsilon: float | None, hardest: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """Kept positive and negative pairs ``[b, R]`` as 0/1 in ``sim``'s dtype under the
    MS mining rule. ``epsilon=None`` keeps every positive and negative pair.
    ``hardest``: the result of :func:`hardest_similarities` if already computed."""
    if epsilon is None:
        return block.pos_float, block.neg_float
    sim = block.sim.detach()
    min_pos, max_neg = hardest_similarities(block) if hardest is None else hardest
    keep_neg = torch.gt(sim + epsilon, min_pos, out=torch.empty_like(sim)).mul_(block.neg_float)
    keep_pos = torch.lt(sim - epsilon, max_neg, out=torch.empty_like(sim)).mul_(block.pos_float)
    return keep_pos, keep_neg


def mine_pairs(block: RowBlock, epsilon: float | None) -> tuple[Tensor, Tensor]:
    """:func:`mine_pairs_float` as two bool masks."""
    keep_pos, keep_neg = mine_pairs_float(block, epsilon)
    return keep_pos > 0, keep_neg > 0


class MultiSimilarityMiner(nn.Module):
    """``miner(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``
    -> ``(keep_pos, keep_neg)``, two bool ``[B, R]`` masks of the kept pairs
    (``R = B + M``; columns: the batch, then the references)."""

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
            keep_pos = torch.empty_like(pairs.sim, dtype=torch.bool)
            keep_neg = torch.empty_like(keep_pos)
            for block in pairs.blocks():
                keep_pos[block.rows], keep_neg[block.rows] = mine_pairs(block, self.epsilon)
        return keep_pos, keep_neg

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


@dataclass(frozen=True)
class _Positives:
    """Per anchor its positives' ``columns [B, K]`` (padding: column 0), ``valid
    [B, K]`` (0/1), their similarities ``values [B, K]``, the lowest of them
    ``min_pos [B, 1]`` (``finfo.max`` if none), the loss's ``scale`` 1/B,
    ``scratch [b, R]``, one block's buffer for the mining mask (reused), and what
    the blocks fill in: each anchor's hardest negative ``max_neg [B, 1]`` and its
    negatives' part of the loss ``neg_part [B, 1]``."""

    columns: Tensor
    valid: Tensor
    values: Tensor
    min_pos: Tensor
    scale: float
    scratch: Tensor
    max_neg: Tensor
    neg_part: Tensor


@register_loss("multi_similarity")
class MultiSimilarityLoss(BlockwiseLoss):
    """``loss(embeddings [B, D], labels [B], ref_embeddings=None, ref_labels=None)``.

    Args:
        alpha, beta, base: the paper's weights and ``lambda`` (2, 50, 0.5).
        epsilon: mining margin (0.1); ``None`` keeps every pair.
        check_norms: raise if the embeddings are not L2-normalized.
    """

    in_place, same_pairs = True, True  # see BlockwiseLoss

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

    def check_inputs(self, embeddings: Tensor, ref_embeddings: Tensor | None) -> None:
        """With ``check_norms``: raise unless every row has unit L2 norm (within 1e-2)."""
        if not self.check_norms:
            return
        for what, emb in (("embeddings", embeddings), ("ref_embeddings", ref_embeddings)):
            if emb is not None and emb.shape[0]:
                norms = emb.detach().float().norm(dim=1)
                if (norms - 1).abs().max() > 1e-2:
                    raise ValueError(
                        f"MultiSimilarityLoss expects L2-normalized {what}; row norms range "
                        f"{float(norms.min()):.3f}..{float(norms.max()):.3f} "
                        "(use F.normalize(x, dim=1))"
                    )

    def prepare(self, pairs: PairBatch, sim: Tensor) -> _Positives:
        """The positives' columns and similarities (``O(B K)``) and each anchor's
        lowest positive similarity; the loss averages over all B anchors."""
        columns, num_pos = pairs.positive_index()
        valid = torch.arange(columns.shape[1], device=sim.device) < num_pos.unsqueeze(1)
        values = sim.gather(1, columns)
        big = torch.finfo(sim.dtype).max
        min_pos = torch.where(valid, values, big).amin(dim=1, keepdim=True)
        rows = min(block_rows(sim.shape[1]), pairs.num_queries)
        scratch = sim.new_empty(rows, sim.shape[1])  # one block's mining mask, reused
        max_neg, neg_part = torch.empty_like(min_pos), torch.empty_like(min_pos)
        scale = 1.0 / pairs.num_queries
        return _Positives(
            columns, valid.to(sim.dtype), values, min_pos, scale, scratch, max_neg, neg_part
        )

    def block_loss(self, block: RowBlock, prepared: _Positives) -> tuple[Tensor, Tensor]:
        """The negatives: dense ``[b, R]`` passes over ``block.sim`` (a scratch copy,
        overwritten with the gradient); their part of the loss is kept per anchor
        and the positives (``[B, K]``) are done once by :meth:`finish`."""
        sim, beta, base, rows = block.sim, self.beta, self.base, block.rows
        # same-label pairs (the positives' values are in `prepared`) to the lowest
        # value: below every negative in the row maximum, never kept by mining
        # (-big + eps = -big), and weight e^-inf = 0
        sim[block.same_index] = -torch.finfo(sim.dtype).max
        min_pos, max_neg = prepared.min_pos[rows], prepared.max_neg[rows]
        torch.amax(sim, dim=1, keepdim=True, out=max_neg)
        keep_neg = None
        if self.epsilon is not None:  # the MS mining rule (see mine_pairs_float)
            keep_neg = torch.add(sim, self.epsilon, out=prepared.scratch[: sim.shape[0]])
            torch.gt(keep_neg, min_pos, out=keep_neg)
        # The negatives' shift is their row maximum whether kept or not (every
        # exponent <= 0, so a weight multiplied by 0 is finite); the loss uses it
        # only if the highest negative is kept (else the row keeps none: 0).
        shift = (beta * (max_neg - base)).clamp_(min=0)
        w_neg = torch.add(-beta * base - shift, sim, alpha=beta, out=sim).exp_()
        if keep_neg is not None:
            w_neg.mul_(keep_neg)
        top = shift.mul_(self._kept_any(min_pos, max_neg)[1])
        denom = w_neg.sum(dim=1, keepdim=True).add_(torch.exp(-top))
        torch.add(top, denom.log(), out=prepared.neg_part[rows])
        return sim.new_zeros(()), w_neg.mul_(denom.reciprocal_().mul_(prepared.scale))

    def finish(self, grad: Tensor, prepared: _Positives) -> Tensor:
        """The positives of every anchor at once (``[B, K]``, from their columns):
        their gradient is added to ``grad`` by a scatter; returns the loss."""
        t, alpha, base = prepared, self.alpha, self.base
        pos_sim, keep_pos = t.values, t.valid
        if self.epsilon is not None:
            keep_pos = keep_pos * (pos_sim - self.epsilon < t.max_neg)
        # the lowest positive is kept if any positive is: the row maximum of the exponent
        top = (
            (-alpha * (t.min_pos - base))
            .clamp_(min=0)
            .mul_(self._kept_any(t.min_pos, t.max_neg)[0])
        )
        w_pos = torch.add(alpha * base - top, pos_sim, alpha=-alpha).clamp_max_(60.0).exp_()
        w_pos.mul_(keep_pos)
        denom = torch.exp(-top) + w_pos.sum(dim=1, keepdim=True)
        grad.scatter_add_(1, t.columns, w_pos.mul_(-t.scale / denom))
        per_anchor = (top + denom.log()) / alpha + t.neg_part / self.beta
        return per_anchor.sum() * t.scale

    def _kept_any(self, min_pos: Tensor, max_neg: Tensor) -> tuple[Tensor, Tensor]:
        """Whether a row keeps any positive / any negative, ``[b, 1]`` bool each
        (the mining rule applied to the lowest positive / highest negative)."""
        big = torch.finfo(min_pos.dtype).max
        has_pos, has_neg = min_pos < big, max_neg > -big
        if self.epsilon is None:
            return has_pos, has_neg
        eps = self.epsilon
        return (min_pos - eps < max_neg) & has_pos, (max_neg + eps > min_pos) & has_neg

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, epsilon={self.epsilon}"
