"""Data-parallel training (``torchrun`` + DistributedDataParallel): the runtime and
the few collective steps the trainer needs.

Runtime facts (rank, world size, device) live here, apart from the frozen recipe.
``init_runtime`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process group:
NCCL on GPU, gloo on CPU. Without that environment it is one process and every
function here is the identity.

Conventions (so that W ranks train as one process with the whole batch):

- The recipe's ``data.batch_size`` is global; each rank trains on ``B / W`` rows
  of every batch (``RankShareSampler``).
- Losses that can take references are wrapped (``distributed.gather``) so each
  rank's rows meet every rank's rows, with the gradient sent back to their owner
  (``losses/distributed.py``).
- DDP averages gradients over ranks. A loss that averages over its rows (Multi-
  Similarity, Smooth-AP, triplet, VSE with ``reduction: mean``) then gives the
  full-batch gradient as is. A sum-reduced loss (VSE's default ``sum``) gives each
  rank a share of the full-batch sum: :class:`RankScaledLoss` multiplies it by W.
  Either way the mean over ranks of the local losses is the full-batch loss,
  which is what the trainer logs. Tested against one process with the full batch.
- Batch norm computes its statistics on each rank's rows (a legitimate
  difference from one process with the whole batch); ``sync_batchnorm`` uses
  the global batch (PyTorch supports it on GPU only).
- Parameters outside the DDP model (losses' own parameters, adversaries) and the
  gradient-cached step (which calls the towers directly, bypassing DDP's hooks)
  have their gradients averaged by :func:`average_gradients`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from retrievalkit.losses.core import PairLoss
from retrievalkit.losses.distributed import DistributedPairLoss, DistributedVSELoss
from retrievalkit.run.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, plots and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> Runtime:
        return cls(device=torch.device(device))


def init_runtime(device: str | None = None, timeout_minutes: float = 60.0) -> Runtime:
    """The runtime from torchrun's environment, joining its process group.

    Args:
        device: ``cpu``, ``cuda`` or ``auto`` / None (``cuda`` when available).
            Under torchrun each rank takes ``cuda:LOCAL_RANK``.
        timeout_minutes: how long a rank waits in a collective (the others wait
            while rank 0 evaluates and writes checkpoints).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    kind = resolve_device(device)
    if world_size == 1:
        return Runtime.single(kind)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = kind.type == "cuda"
    if on_gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if on_gpu else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
    where = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    log.info("rank %d of %d on %s", rank, world_size, where)
    return Runtime(device=where, rank=rank, world_size=world_size)


def shutdown(runtime: Runtime) -> None:
    """Leave the process group (after every rank arrived)."""
    if runtime.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def average_gradients(params: Iterable[nn.Parameter], runtime: Runtime) -> None:
    """All-reduce ``param.grad`` to its mean over ranks (a parameter without a
    gradient counts as zero, so every rank joins the same collectives)."""
    if not runtime.distributed:
        return
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad.div_(runtime.world_size)


def mean_over_ranks(values: dict[str, float], runtime: Runtime) -> dict[str, float]:
    """Each value's mean over ranks (same keys, same order on every rank), in float64."""
    if not runtime.distributed:
        return values
    keys = list(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if runtime.device.type == "cuda":
        tensor = tensor.to(runtime.device)
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / runtime.world_size).tolist(), strict=True))


def gather_objects(value: Any, runtime: Runtime) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order."""
    if not runtime.distributed:
        return [value]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, value)
    return out


class RankScaledLoss(nn.Module):
    """``scale * loss(**inputs)``: a sum-reduced loss times W, so DDP's gradient
    average over ranks gives the full-batch gradient (see the module docstring).
    The wrapped loss's ``default_inputs`` are kept."""

    def __init__(self, loss: nn.Module, scale: float) -> None:
        super().__init__()
        self.loss, self.scale = loss, scale
        self.default_inputs = dict(loss.default_inputs)

    def forward(self, **inputs: Tensor) -> Tensor:
        return self.loss(**inputs) * self.scale


def for_ranks(module: nn.Module, runtime: Runtime, gather: bool) -> nn.Module:
    """The loss module as each rank calls it: gathered across ranks when it can
    take references (``gather``) and scaled by W when sum-reduced; unchanged in
    one process. Adversarial, instance and memory terms see their rank's rows."""
    if not runtime.distributed:
        return module
    wrapped = module
    takes_references = getattr(module, "accepts_references", False)
    if gather and takes_references and isinstance(module, PairLoss):
        wrapped = DistributedPairLoss(module)
    elif gather and takes_references:  # cross-modal: VSE, CLIP (ref_img/ref_txt/ref_ids)
        wrapped = DistributedVSELoss(module)
    elif gather:
        log.info("%s is not gathered across ranks: it sees each rank's rows", type(module).__name__)
    inner = getattr(module, "loss", None)  # a memory wrapper's loss
    reduction = getattr(module, "reduction", None) or getattr(inner, "reduction", "mean")
    if reduction == "sum":
        wrapped = RankScaledLoss(wrapped, runtime.world_size)
    if wrapped is not module and hasattr(module, "collapsed_value"):
        # the logged parts are the full batch's: so is the value at collapse
        wrapped.collapsed_value = module.collapsed_value
    return wrapped


def wrap_model(model: nn.Module, runtime: Runtime, find_unused: bool) -> nn.Module:
    """The model under DistributedDataParallel (the model itself in one process).
    Built after a stage's freezing: DDP syncs the parameters that need a gradient
    when it is made."""
    if not runtime.distributed:
        return model
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused
    )


def sync_batchnorm(model: nn.Module, runtime: Runtime) -> nn.Module:
    """Batch norm over the global batch (``SyncBatchNorm``, GPU only in PyTorch)."""
    if not runtime.distributed:
        return model
    if runtime.device.type != "cuda":
        raise ValueError(
            "distributed.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPU only; "
            "on CPU use a model without batch norm (e.g. small_cnn batchnorm: false)"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
