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
block, so one ``B x B`` matrix is all it holds; the backward is the one matmul
``(G + G^T) x`` (symmetrized in place first, unless the loss wrote ``G + G^T``
directly: :meth:`BlockwiseLoss.symmetric_gradient`; a transposing pass costs
about as much as a third of a matmul here). A loss declaring
``in_place`` computes over the block itself (a scratch copy of ``S``'s rows) and
leaves its gradient there: no ``b x R`` temporaries beyond what it allocates, no
copy. The brute-force loops in ``tests/losses`` check every block gradient
against autograd on the formulas.

Double backward is not supported (the gradient is not itself differentiable).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses.core import PairBatch, PairLoss, RowBlock, scaled_gram, symmetrize_


class BlockwiseLoss(PairLoss):
    """Base: implement :meth:`block_loss` (and :meth:`prepare` for global facts).

    ``in_place = True`` declares that ``prepare`` and ``block_loss`` may overwrite
    ``sim`` (a scratch copy of ``S``: without references it is ``S`` itself, which
    becomes ``dL/dS``) and that ``block_loss`` may return ``block.sim`` as the
    block's gradient (then nothing is copied). Otherwise ``sim`` is read only.
    Blocks carry their same-label pairs (:attr:`RowBlock.same_index`) when
    ``same_pairs = True``.
    """

    in_place: ClassVar[bool] = False
    same_pairs: ClassVar[bool] = False

    def prepare(self, pairs: PairBatch, sim: Tensor) -> Any:
        """Facts every block needs (pair counts, per-row statistics); ``sim`` is detached."""
        return None

    def block_loss(self, block: RowBlock, prepared: Any) -> tuple[Tensor, Tensor]:
        """``(this block's part of the loss (scalar), dL/dS for block.sim [b, R])``.

        The parts of all blocks add up to the loss (normalize inside).
        """
        raise NotImplementedError

    def finish(self, grad: Tensor, prepared: Any) -> Tensor | None:
        """After the last block: final changes to the whole ``grad [B, R]`` and a
        last part of the loss (``None``: nothing to add; default)."""
        return None

    def symmetric_gradient(self, prepared: Any) -> bool:
        """Whether, for ``S = x x^T`` (``pairs.gram``), the blocks wrote ``G + G^T``
        instead of ``G = dL/dS`` (then the backward needs no symmetrization).

        A loss may do so when it can form ``(G + G^T)_ij`` from row ``i``'s block,
        reading ``S_ij`` for ``S_ji`` (equal: ``x x^T`` is symmetric bit for bit
        with the BLAS here, checked in the tests; otherwise a rounding-level
        difference). Default: no.
        """
        return False

    def gram_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        return _GramBlockwiseFunction.apply(x, labels, self)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:
        return _BlockwiseFunction.apply(pairs.sim, pairs, self)


def _run_blocks(
    pairs: PairBatch, sim: Tensor, loss: BlockwiseLoss, grad: Tensor
) -> tuple[Tensor, Any]:
    """The loss over ``sim [B, R]`` (detached) block by block, ``dL/dS`` written into
    ``grad`` (may be ``sim`` itself: a block's rows are overwritten after use and
    :meth:`BlockwiseLoss.prepare` reads everything first). Returns the loss and
    what :meth:`BlockwiseLoss.prepare` returned."""
    prepared = loss.prepare(pairs, sim)
    total = sim.new_zeros(())
    for block in pairs.blocks(sim, same_pairs=loss.same_pairs):
        part, block_grad = loss.block_loss(block, prepared)
        total += part
        if block_grad is not block.sim or grad is not sim:
            grad[block.rows] = block_grad
    last = loss.finish(grad, prepared)
    return total if last is None else total + last, prepared


class _BlockwiseFunction(torch.autograd.Function):
    """``sim [B, R] -> loss``: runs ``loss.block_loss`` over row blocks, keeps ``dL/dS``."""

    @staticmethod
    def forward(ctx: Any, sim: Tensor, pairs: PairBatch, loss: BlockwiseLoss) -> Tensor:  # type: ignore[override]
        if loss.in_place:  # the loss works on a copy of S and turns it into dL/dS
            grad = sim.detach().clone(memory_format=torch.contiguous_format)
            sim = grad
        else:
            sim, grad = sim.detach(), torch.empty_like(sim)
        total, _ = _run_blocks(pairs, sim, loss, grad)
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
            sim = scaled_gram(x)
        pairs = PairBatch(sim=sim, labels=labels, ref_labels=labels, gram=True)
        total, prepared = _run_blocks(pairs, sim, loss, sim)
        ctx.save_for_backward(x, sim)
        ctx.symmetric = loss.symmetric_gradient(prepared)  # already G + G^T
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
