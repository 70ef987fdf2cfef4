"""Elementwise functions for the losses' ``B x R`` passes, vectorized on CPU.

PyTorch's ``softplus``, ``log1p`` and ``logaddexp`` run at 5-6 ns per element on
one CPU thread here (``log1p`` is not vectorized), against 0.1-0.4 ns for
``exp``, ``log`` and arithmetic; over ``B^2 = 1.7e7`` pairs that is 100 ms, half
the matmul floor. These forms use ``exp`` and ``log`` only. They never overflow;
their absolute error is within the dtype's epsilon (``log(1 + t)`` for
``t = e^{-|x|} <= 1``), which is all a loss summed over many pairs can resolve.
"""

from __future__ import annotations

import torch
from torch import Tensor


def log1p_exp_neg_abs(x: Tensor) -> Tensor:
    """``log(1 + e^{-|x|})`` (a new tensor)."""
    return x.abs().neg_().exp_().add_(1).log_()


def softplus(x: Tensor) -> Tensor:
    """``log(1 + e^x) = max(x, 0) + log(1 + e^{-|x|})``."""
    return log1p_exp_neg_abs(x).add_(x.clamp_min(0))


def logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(e^a + e^b) = max(a, b) + log(1 + e^{-|a - b|})`` (broadcasting)."""
    return log1p_exp_neg_abs(a - b).add_(torch.maximum(a, b))
