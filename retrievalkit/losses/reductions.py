"""Masked reductions on ``[B, R]`` matrices used by several losses."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (0 if the mask is empty, in the graph)."""
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / count.clamp(min=1)


def log1p_sum_exp(logits: Tensor, mask: Tensor) -> Tensor:
    """Per row ``log(1 + sum_{mask} exp(logits))``, stable: ``[B, R] -> [B]``.

    An empty row gives ``log(1) = 0``.
    """
    neg_inf = torch.finfo(logits.dtype).min
    masked = torch.where(mask, logits, torch.full_like(logits, neg_inf))
    top = masked.amax(dim=1, keepdim=True).clamp(min=0).detach()
    inner = torch.exp(masked - top).sum(dim=1, keepdim=True) + torch.exp(-top)
    return (top + torch.log(inner)).squeeze(1)
