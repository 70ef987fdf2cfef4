"""vsepp's ``ContrastiveLoss`` (Faghri et al., ``model.py``), as a reference to check
and time :class:`~retrievalkit.losses.VSELoss` against.

Kept as the original computes it (autograd through the full ``B x B`` masks), only
without ``.cuda()``: ``tests/losses/test_vse.py`` checks equal values and
gradients, ``benchmarks/losses.py`` times it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def vsepp_contrastive(im: Tensor, s: Tensor, margin: float, max_violation: bool) -> Tensor:
    """VSE++ (``max_violation=True``) or VSE0 hinge loss of ``im [B, D]``, ``s [B, D]``,
    summed over the batch; pair ``(i, i)`` is matched, every other pair a negative."""
    scores = im @ s.t()
    diagonal = scores.diag().view(im.size(0), 1)
    d1 = diagonal.expand_as(scores)
    d2 = diagonal.t().expand_as(scores)
    cost_s = (margin + scores - d1).clamp(min=0)
    cost_im = (margin + scores - d2).clamp(min=0)
    mask = torch.eye(scores.size(0), device=scores.device) > 0.5
    cost_s = cost_s.masked_fill_(mask, 0)
    cost_im = cost_im.masked_fill_(mask, 0)
    if max_violation:
        cost_s = cost_s.max(1)[0]
        cost_im = cost_im.max(0)[0]
    return cost_s.sum() + cost_im.sum()
