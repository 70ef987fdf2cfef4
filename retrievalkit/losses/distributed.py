"""Multi-process (DDP) losses: each rank's queries against every rank's references.

Data-parallel training shrinks the negatives to the per-GPU batch (PML#10). Here
each rank gathers the other ranks' embeddings, in global rank order, and computes
the loss of its own rows (queries) against all columns: the batch first, then the
other ranks' rows as ``ref_embeddings`` (the core's convention). The gather keeps
the gradient: in backward the gradient of every gathered block is summed over the
ranks and returned to the rank that owns it, so an embedding also learns from the
rows of other ranks where it is a reference.

Exactness (tested with 2 gloo processes against one process holding the whole
batch): with ``W`` ranks of equal batches and a loss that averages over its query
rows (Multi-Similarity, Smooth-AP, triplet), the mean of the ranks' losses is the
full-batch loss and each rank's embedding gradient is ``W`` times the full-batch
gradient of its rows, so DDP's gradient averaging (``1 / W``) gives exactly the
full-batch parameter gradient. Smooth-AP and triplet average over the queries
that have a positive: exact when every rank has as many of those (always true
when each sample has a positive in the gathered batch, e.g. P x K sampling). A
loss that normalizes by a global pair count (contrastive, lifted, binomial) is
normalized per rank instead.

:class:`DistributedVSELoss` does the same for image-text pairs: this rank's
images against every rank's captions and its captions against every rank's
images (sum reduction: the ranks' losses add up to the full-batch loss).

Without an initialized process group (or with one process) everything here is the
identity: the same code runs in a single process.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from retrievalkit.losses.core import PairLoss


def _world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """``x [B, D]`` -> ``[W, B, D]`` (all ranks' rows, rank order); backward sums
    the gradient over the ranks (all-reduce) and keeps this rank's block."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        rank, world = _world()
        ctx.rank = rank
        blocks = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(blocks, x.contiguous())
        return torch.stack(blocks)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # all_reduce works on every backend (gloo has no reduce_scatter)
        return grad[ctx.rank]


def gather_with_grad(x: Tensor) -> list[Tensor]:
    """Every rank's ``x [B, D]`` in global rank order, this rank's entry being ``x``
    itself (its local graph intact); the others carry their gradient back to their
    owners. All ranks must pass the same shape."""
    rank, world = _world()
    if world == 1:
        return [x]
    blocks = list(_GatherWithGrad.apply(x).unbind(0))
    blocks[rank] = x
    return blocks


def gather_labels(labels: Tensor) -> list[Tensor]:
    """Every rank's ``labels [B]`` in global rank order (no gradient)."""
    rank, world = _world()
    if world == 1:
        return [labels]
    blocks = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(blocks, labels.contiguous())
    blocks[rank] = labels
    return blocks


def other_ranks_references(
    embeddings: Tensor, labels: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    """The other ranks' rows as ``(ref_embeddings [(W-1) B, D], ref_labels)``, in
    global rank order with this rank's block left out (the core puts the local
    batch first); ``(None, None)`` in a single process."""
    if _world()[1] == 1:
        return None, None
    return _other_ranks(gather_with_grad(embeddings)), _other_ranks(gather_labels(labels))


def _other_ranks(blocks: list[Tensor]) -> Tensor:
    """The gathered blocks of every rank but this one, concatenated in rank order."""
    rank = _world()[0]
    return torch.cat([block for r, block in enumerate(blocks) if r != rank])


def _check_equal_batches(batch_size: int, device: torch.device, what: str) -> None:
    """Raise unless every rank has the same batch size (the gather needs it)."""
    _, world = _world()
    if world == 1:
        return
    size = torch.tensor([batch_size], device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(
            f"{what} needs the same batch size on every rank, got "
            f"{[int(s) for s in sizes]} (drop or pad the last batch)"
        )


class DistributedPairLoss(nn.Module):
    """``DistributedPairLoss(loss)(embeddings [B, D], labels [B]) -> scalar``: ``loss``
    on this rank's rows against all ranks' embeddings (see the module docstring).

    Every rank must call it with the same batch size (pad or drop the last batch).
    """

    def __init__(self, loss: PairLoss) -> None:
        super().__init__()
        if not getattr(loss, "accepts_references", False):
            raise ValueError(f"{type(loss).__name__} takes no references: it cannot gather")
        self.loss = loss
        self.default_inputs = dict(loss.default_inputs)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_equal_batches(embeddings.shape[0], embeddings.device, "DistributedPairLoss")
        ref_embeddings, ref_labels = other_ranks_references(embeddings, labels)
        return self.loss(embeddings, labels, ref_embeddings, ref_labels)


class DistributedVSELoss(nn.Module):
    """``DistributedVSELoss(VSELoss(...))(img [B, D], txt [B, D], img_ids [B])``: this
    rank's images ranked against every rank's captions and its captions against
    every rank's images. ``img_ids`` must be global (unique across ranks for
    different images) so that captions of one image on two ranks are not negatives.

    With ``reduction="sum"`` the ranks' losses add up to the full-batch loss and each
    rank's embedding gradient equals the full-batch gradient of its rows (tested).
    Any cross-modal loss with VSELoss's reference arguments works the same way
    (``ClipLoss``: a mean over the batch's rows, so the mean of the ranks' losses is
    the full-batch loss, as for the pair losses above).
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        if not getattr(loss, "accepts_references", False):
            raise ValueError(f"{type(loss).__name__} takes no references: it cannot gather")
        self.loss = loss
        self.default_inputs = dict(loss.default_inputs)

    def forward(self, img: Tensor, txt: Tensor, img_ids: Tensor | None = None) -> Tensor:
        world = _world()[1]
        if img_ids is None:
            if world > 1:
                raise ValueError("DistributedVSELoss needs global img_ids with several ranks")
            return self.loss(img, txt)
        _check_equal_batches(img.shape[0], img.device, "DistributedVSELoss")
        if world == 1:
            return self.loss(img, txt, img_ids)
        return self.loss(
            img,
            txt,
            img_ids,
            _other_ranks(gather_with_grad(img)),
            _other_ranks(gather_with_grad(txt)),
            _other_ranks(gather_labels(img_ids)),
        )
