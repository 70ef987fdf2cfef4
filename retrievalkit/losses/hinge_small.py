"""The VSE++ hinge terms of a small batch without references, in few tensor operations.

At ``B * B <= DENSE_MASK_ELEMENTS`` (B <= 256) a step of
:class:`~retrievalkit.losses.hinge.VSEHinge` costs more in per-call dispatch
(a few microseconds per torch call) than in arithmetic. :class:`SmallVSEHinge`
computes the same terms of the square ``S = img txt^T`` (both directions) with
fewer calls, and on the ``B x B`` matrix only with float operations (torch's
comparisons, with their bool outputs, cost several times more there):

- SH: the costs ``[h]_+ = [(margin + S) - S_qq]_+`` of each direction are one
  ``B x B`` matrix each; the value is their two sums (as vsepp sums them), and
  ``G`` their signs (1 exactly where ``h > 0``) with ``-count`` on the diagonal;
  the backward is the two matmuls. On float32 CPU tensors one C call writes both cost
  matrices (summed by torch, as vsepp) and ``G`` (over ``S``):
  :func:`~retrievalkit.losses.vse_native.sum_hinges`.
- MH: rows and columns are reduced in one pass over ``[S; S^T]`` ``[2B, B]``
  (image queries, then caption queries) and both directions' ``[2B]`` terms in
  one set of vector operations; the gradient is a
  :class:`~retrievalkit.losses.hinge.HardestGrad`, whose backward (gathers and
  index-adds, ``O(B D)``) is the large-B path's own. On float32 CPU tensors the
  reductions, costs and tie test are one call of the C kernel
  (:func:`~retrievalkit.losses.vse_native.hardest`: one pass over ``S``, no
  transposed copy), which gives the same costs bit for bit.

Values and gradients are those of :mod:`retrievalkit.losses.hinge` (ties split
exactly by :func:`~retrievalkit.losses.hinge.tied_rows`), checked in
``tests/losses/test_vse.py`` against vsepp's code, the loops and the large-B path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses import vse_native
from retrievalkit.losses.hinge import (
    DENSE_MASK_ELEMENTS,
    HardestGrad,
    SparseGrad,
    autocast_off,
    exclude_same_ids_,
    hinge_products,
    tied_rows,
)


def use_small_path(num: int) -> bool:
    """Whether a batch of ``num`` pairs without references takes :class:`SmallVSEHinge`."""
    return num * num <= DENSE_MASK_ELEMENTS


def sum_hinges(sim: Tensor, ids: Tensor | None, margin: float) -> tuple[Tensor, Tensor]:
    """SH value of both directions and ``G = dL/dS [B, B]`` of the square ``sim``
    (float32 on the CPU: by the C kernel, ``G`` written over ``sim``; else ``sim``
    is left unchanged); ``ids [B]`` (None: all distinct)."""
    if vse_native.usable(sim):
        return vse_native.sum_hinges(sim, ids, margin)
    diag = sim.diagonal()
    shifted = sim + margin  # (margin + S) first, as the formula's order
    exclude_same_ids_(shifted, ids, ids)  # lowest: a cost of exactly 0
    rows = torch.sub(shifted, diag.unsqueeze(1)).clamp_min_(0)  # image -> text
    cols = shifted.sub_(diag).clamp_min_(0)  # text -> image, S_ij against S_jj
    total = rows.sum() + cols.sum()
    grad = rows.sign_()
    counts = grad.sum(dim=1) + cols.sign_().sum(dim=0)
    grad.add_(cols).diagonal().sub_(counts)  # the diagonal is a non-negative: 0 before
    return total, grad


def max_hinges(
    img: Tensor, txt: Tensor, ids: Tensor | None, margin: float
) -> tuple[Tensor, HardestGrad]:
    """MH value of both directions and its gradient for ``S = img txt^T [B, B]``;
    ``ids [B]`` (None: all distinct).

    Per query ``k`` of ``[S; S^T]``: ``top = (margin + max) - S_qq`` and ``second``,
    the same of the largest other similarity. ``cost = [top]_+`` gives the value
    and the weight (its sign: 1 exactly where ``top > 0``); the query's maximum ties
    when ``second == cost`` (``second <= top``, so this is ``top > 0`` and a tie,
    or ``top == second == 0``, a row without gradient that the exact split also gives).
    """
    num = img.shape[0]
    if vse_native.usable(img, txt):
        return _max_hinges_native(torch.mm(img, txt.T), ids, margin)
    both = img.new_empty(2 * num, num)  # row k < B: image k; row B + j: caption j
    sim = torch.mm(img, txt.T, out=both[:num])
    diag = sim.diagonal().clone()
    exclude_same_ids_(sim, ids, ids)
    both[num:] = sim.T  # cheaper than torch.cat with a transposed operand
    value, index = both.max(dim=1)
    second = both.scatter_(1, index.unsqueeze(1), -torch.inf).amax(dim=1)
    top = torch.stack([value, second]).add_(margin).view(2, 2, num).sub_(diag)
    costs = top[0].clamp_min(0)  # [2, B]: image queries, caption queries
    total = costs.sum(dim=1).sum()  # each direction summed, then added (as vsepp)
    tied = top[1] == costs
    weight = costs.sign()
    ties = []
    if bool(tied.any()):
        both.scatter_(1, index.unsqueeze(1), value.unsqueeze(1))  # S again (excluded)
        weight.masked_fill_(tied, 0)
        ties = _tied_queries(sim, diag, tied, margin)
    return total, _hardest_grad(index, weight, ties)


def _tied_queries(sim: Tensor, diag: Tensor, tied: Tensor, margin: float) -> list[SparseGrad]:
    """The exact split of each direction's tied queries (``tied [2, B]`` bool: image
    queries, caption queries) over ``sim [B, B]`` with non-negatives excluded."""
    return [
        tied_rows(sim, diag, tied[part], margin, transposed=part == 1)
        for part in (0, 1)
        if bool(tied[part].any())
    ]


def _hardest_grad(index: Tensor, weight: Tensor, ties: list[SparseGrad]) -> HardestGrad:
    """The MH gradient from ``index [2B]`` (each query's hardest negative) and
    ``weight`` (``[2B]`` or ``[2, B]``: image queries, then caption queries)."""
    num = index.shape[0] // 2
    row_index, col_index = index.view(2, num).unbind()
    row_weight, col_weight = weight.view(2, num).unbind()
    return HardestGrad(row_index, row_weight, col_index, col_weight, ties)


def _max_hinges_native(
    sim: Tensor, ids: Tensor | None, margin: float
) -> tuple[Tensor, HardestGrad]:
    """:func:`max_hinges` of ``sim [B, B]`` (float32, CPU) by the fused kernel: the
    same costs, weights and indices; the tied queries resolved here, as there."""
    num = sim.shape[0]
    costs, weight, index, tied, num_tied = vse_native.hardest(sim, ids, margin)
    total = costs.view(2, num).sum(dim=1).sum()  # each direction summed, then added (as vsepp)
    ties = []
    if num_tied:
        diag = sim.diagonal().clone()
        exclude_same_ids_(sim, ids, ids)
        ties = _tied_queries(sim, diag, tied.view(2, num), margin)
    return total, _hardest_grad(index, weight, ties)


class SmallVSEHinge(torch.autograd.Function):
    """``(img [B, D], txt [B, D])`` -> the summed hinge terms of both directions
    (scalar), without references. Inputs share one float32/float64 dtype; ``ids
    [B]`` (None: all distinct)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, img: Tensor, txt: Tensor, ids: Tensor | None, margin: float, max_violation: bool
    ) -> Tensor:
        with autocast_off(img.device.type):
            if max_violation:
                total, grad = max_hinges(img, txt, ids, margin)
            else:
                total, grad = sum_hinges(torch.mm(img, txt.T), ids, margin)
        ctx.save_for_backward(img, txt)
        ctx.grad = grad
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        img, txt = ctx.saved_tensors
        grad = ctx.grad
        scale = grad_output if grad_output.dtype == img.dtype else grad_output.to(img.dtype)
        with autocast_off(img.device.type):
            d_img, d_txt = hinge_products(grad, img, txt, scale)
        return d_img, d_txt, None, None, None
