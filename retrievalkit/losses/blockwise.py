"""Losses computed block by block of query rows, with their gradient in closed form.

A :class:`BlockwiseLoss` gives, for one :class:`~retrievalkit.losses.core.RowBlock`
(``sim [b, R]`` with its masks), its share of the loss and ``dL/dS`` for those
rows. One autograd Function runs the blocks in the forward pass and keeps the
assembled ``dL/dS [B, R]`` for the backward pass. Why: autograd through masks,
``where`` and ``logsumexp`` keeps several ``B x R`` intermediates and runs
each elementwise pass over the whole matrix (memory bound); here each pass runs
on a block of ~1 MiB (near the cache), and the only ``B x R`` tensors are ``S``
and ``dL/dS``. Without extra references the loss also makes ``S = x x^T`` itself
(:class:`_GramBlockwiseFunction`) and writes ``dL/dS`` over ``S`` block by
block, so one ``B x B`` matrix is all it holds; the backward symmetrizes it in
place and does the one matmul ``(G + G^T) x``. The brute-force loops in ``tests/losses`` check every block
gradient against autograd on the formulas.

Double backward is not supported (the gradient is not itself differentiable).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses.core import PairBatch, PairLoss, RowBlock, symmetrize_


class BlockwiseLoss(PairLoss):
    """Base: implement :meth:`block_loss` (and :meth:`prepare` for global facts)."""

    def prepare(self, pairs: PairBatch, sim: Tensor) -> Any:
        """Facts every block needs (pair counts, per-row statistics); ``sim`` is detached."""
        return None

    def block_loss(self, block: RowBlock, prepared: Any) -> tuple[Tensor, Tensor]:
        """``(this block's part of the loss (scalar), dL/dS for block.sim [b, R])``.

        The parts of all blocks add up to the loss (normalize inside).
        """
        raise NotImplementedError

    def gram_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        return _GramBlockwiseFunction.apply(x, labels, self)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        return _BlockwiseFunction.apply(pairs.sim, pairs, self)


def _run_blocks(pairs: PairBatch, sim: Tensor, loss: BlockwiseLoss, grad: Tensor) -> Tensor:
    """The loss over ``sim [B, R]`` (detached) block by block, ``dL/dS`` written into
    ``grad`` (may be ``sim`` itself: a block's rows are overwritten after use and
    :meth:`BlockwiseLoss.prepare` reads everything first)."""
    prepared = loss.prepare(pairs, sim)
    total = sim.new_zeros(())
    for block in pairs.blocks(sim):
        part, block_grad = loss.block_loss(block, prepared)
        total += part
        grad[block.rows] = block_grad
    return total


class _BlockwiseFunction(torch.autograd.Function):
    """``sim [B, R] -> loss``: runs ``loss.block_loss`` over row blocks, keeps ``dL/dS``."""

    @staticmethod
    def forward(ctx: Any, sim: Tensor, pairs: PairBatch, loss: BlockwiseLoss) -> Tensor:  # type: ignore[override]
        sim = sim.detach()
        grad = torch.empty_like(sim)
        total = _run_blocks(pairs, sim, loss, grad)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        if grad_output.device.type == "cpu" and float(grad_output) == 1.0:
            return grad, None, None  # the usual loss.backward(): no B x R copy
        return grad * grad_output, None, None


class _GramBlockwiseFunction(torch.autograd.Function):
    """``x [B, D] -> loss`` on ``S = x x^T``: ``dL/dS`` is written over ``S`` and the
    backward is ``(G + G^T) x`` (symmetrized in place, one matmul). ``x`` is in the
    compute dtype."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, labels: Tensor, loss: BlockwiseLoss) -> Tensor:  # type: ignore[override]
        with torch.autocast(device_type=x.device.type, enabled=False):
            sim = x @ x.T
        total = _run_blocks(PairBatch(sim=sim, labels=labels, ref_labels=labels), sim, loss, sim)
        ctx.save_for_backward(x, sim)
        ctx.symmetric = False
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        x, grad = ctx.saved_tensors
        if not ctx.symmetric:  # a second backward (retain_graph) reuses it
            symmetrize_(grad)
            ctx.symmetric = True
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (grad @ x).mul_(grad_output), None, None
