"""Optimizer and learning-rate schedule (per stage: base lr, drops, warm-up)."""

from __future__ import annotations

import torch

from retrievalkit.run.config import OptimConfig, StageConfig


def build_optimizer(config: OptimConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over ``params`` (model and loss parameters)."""
    if not params:
        raise ValueError("nothing to optimize: every parameter is frozen")
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def learning_rate(config: OptimConfig, stage: StageConfig, epoch_in_stage: int, step: int) -> float:
    """The lr for a step: stage base lr, times ``lr_drop_factor`` per passed drop
    epoch, times a linear warm-up over the run's first ``warmup_steps`` steps."""
    base = stage.lr if stage.lr is not None else config.lr
    drops = sum(epoch_in_stage >= e for e in stage.lr_drop_epochs)
    lr = base * stage.lr_drop_factor**drops
    if config.warmup_steps and step < config.warmup_steps:
        lr *= (step + 1) / config.warmup_steps
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
