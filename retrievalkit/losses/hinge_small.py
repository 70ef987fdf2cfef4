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
  the backward is the two matmuls.
- MH: rows and columns are reduced in one pass over ``[S; S^T]`` ``[2B, B]``
  (image queries, then caption queries) and both directions' ``[2B]`` terms in
  one set of vector operations; the backward is two gathers and two
  index-adds, with the float operations of :class:`~retrievalkit.losses.hinge.HardestGrad`.

Values and gradients are those of :mod:`retrievalkit.losses.hinge` (ties split
exactly by :func:`~retrievalkit.losses.hinge.tied_rows`), checked in
``tests/losses/test_vse.py`` against vsepp's code, the loops and the large-B path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses.hinge import (
    DENSE_MASK_ELEMENTS,
    SparseGrad,
    autocast_off,
    exclude_same_ids_,
    tied_rows,
)


def use_small_path(num: int) -> bool:
    """Whether a batch of ``num`` pairs without references takes :class:`SmallVSEHinge`."""
    return num * num <= DENSE_MASK_ELEMENTS


def sum_hinges(sim: Tensor, ids: Tensor | None, margin: float) -> tuple[Tensor, Tensor]:
    """SH value of both directions and ``G = dL/dS [B, B]`` of the square ``sim``
    (left unchanged); ``ids [B]`` (None: all distinct)."""
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


@dataclass(frozen=True)
class StackedHardest:
    """MH ``dL/dS`` of the square ``S`` for the ``2B`` queries of ``[S; S^T]``
    (images ``q < B``, then captions): ``+weight[k]`` at the hardest negative
    ``index[k]`` of query ``k``, ``-weight[k]`` at its match; plus the tied queries,
    resolved exactly."""

    index: Tensor
    weight: Tensor
    ties: list[SparseGrad]

    def products(self, img: Tensor, txt: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """``scale * (G txt, G^T img)``: gathers and index-adds, ``O(B D)``."""
        num = img.shape[0]
        w_row, w_col = (self.weight * scale).view(2, num, 1).unbind()
        row_index, col_index = self.index.view(2, num).unbind()
        w_diag = w_row + w_col
        d_img = txt.index_select(0, row_index).mul_(w_row)
        d_img.addcmul_(txt, w_diag, value=-1)  # the matched pairs
        scaled = torch.mul(txt, w_col)
        d_img.index_add_(0, col_index, scaled)
        d_txt = img.index_select(0, col_index).mul_(w_col)
        d_txt.addcmul_(img, w_diag, value=-1)
        d_txt.index_add_(0, row_index, torch.mul(img, w_row, out=scaled))
        for tie in self.ties:
            tie.accumulate_(d_img, d_txt, img, txt, scale)
        return d_img, d_txt


def max_hinges(
    img: Tensor, txt: Tensor, ids: Tensor | None, margin: float
) -> tuple[Tensor, StackedHardest]:
    """MH value of both directions and its gradient for ``S = img txt^T [B, B]``;
    ``ids [B]`` (None: all distinct).

    Per query ``k`` of ``[S; S^T]``: ``top = (margin + max) - S_qq`` and ``second``,
    the same of the largest other similarity. ``cost = [top]_+`` gives the value
    and the weight (its sign: 1 exactly where ``top > 0``); the query's maximum ties
    when ``second == cost`` (``second <= top``, so this is ``top > 0`` and a tie,
    or ``top == second == 0``, a row without gradient that the exact split also gives).
    """
    num = img.shape[0]
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
    weight = costs.sign().view(-1)
    if not bool(tied.any()):
        return total, StackedHardest(index, weight, [])
    both.scatter_(1, index.unsqueeze(1), value.unsqueeze(1))  # S again (excluded)
    ties = [
        tied_rows(sim, diag, tied[part], margin, transposed=part == 1)
        for part in (0, 1)
        if bool(tied[part].any())
    ]
    return total, StackedHardest(index, weight.masked_fill_(tied.view(-1), 0), ties)


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
                total, grad = sum_hinges(img @ txt.T, ids, margin)
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
            if isinstance(grad, StackedHardest):
                d_img, d_txt = grad.products(img, txt, scale)
            else:
                d_img, d_txt = (grad @ txt).mul_(scale), (grad.T @ img).mul_(scale)
        return d_img, d_txt, None, None, None
