"""The data-parallel runtime in one process: identity, loss wrapping, clear errors
(the 2-process behaviour is tested in test_ddp.py)."""

import pytest
import torch

from retrievalkit.losses import ClipLoss, MultiSimilarityLoss, VSELoss
from retrievalkit.losses.distributed import DistributedPairLoss, DistributedVSELoss
from retrievalkit.losses.instance import InstanceLoss
from retrievalkit.models.image import SmallCNN
from retrievalkit.training.distributed import (
    RankScaledLoss,
    Runtime,
    for_ranks,
    init_runtime,
    mean_over_ranks,
    sync_batchnorm,
    wrap_model,
)

CPU = torch.device("cpu")
TWO = Runtime(device=CPU, rank=1, world_size=2)  # not joined: only for what needs no collective


def test_one_process_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    runtime = init_runtime("cpu")
    assert runtime == Runtime.single("cpu") and runtime.is_main and not runtime.distributed
    loss, model = VSELoss(), SmallCNN(widths=(4,), out_dim=4)
    assert for_ranks(loss, runtime, gather=True) is loss
    assert wrap_model(model, runtime, find_unused=False) is model
    assert sync_batchnorm(model, runtime) is model
    assert mean_over_ranks({"total": 1.5}, runtime) == {"total": 1.5}


def test_losses_are_gathered_and_sum_reductions_scaled_by_world_size():
    vse = for_ranks(VSELoss(), TWO, gather=True)  # sum over rows: x W
    assert isinstance(vse, RankScaledLoss) and vse.scale == 2
    assert isinstance(vse.loss, DistributedVSELoss)
    assert vse.default_inputs == VSELoss.default_inputs
    assert vse.collapsed_value(8) == VSELoss().collapsed_value(8)  # for the global batch
    mean_vse = for_ranks(VSELoss(reduction="mean"), TWO, gather=True)
    assert isinstance(mean_vse, DistributedVSELoss)
    assert isinstance(for_ranks(MultiSimilarityLoss(), TWO, gather=True), DistributedPairLoss)
    assert isinstance(for_ranks(VSELoss(), TWO, gather=False).loss, VSELoss)
    clip = for_ranks(ClipLoss(), TWO, gather=True)  # cross-modal, mean over rows: not scaled
    assert isinstance(clip, DistributedVSELoss) and isinstance(clip.loss, ClipLoss)
    instance = InstanceLoss(num_instances=4, dim=3)
    assert for_ranks(instance, TWO, gather=True) is instance  # per rank, mean: not gathered
    assert not TWO.is_main


def test_sync_batchnorm_on_cpu_is_a_clear_error():
    with pytest.raises(ValueError, match="SyncBatchNorm runs on GPU only"):
        sync_batchnorm(SmallCNN(widths=(4,), out_dim=4), TWO)
