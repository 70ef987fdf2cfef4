"""Optimizers and learning-rate schedules: one optimizer per parameter group.

The recipe's ``optim`` is the ``main`` group (every trainable parameter no other
group takes); ``optim.groups`` carve out parameters by module-name prefix, each
with its own optimizer, lr and lr drops; the adversaries' parameters
(discriminators of adversarial loss terms) form an ``adversary`` group unless a
recipe group takes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from retrievalkit.run.config import ConfigError, OptimConfig, ParamGroupConfig, StageConfig


@dataclass
class ParamGroup:
    """A built group: its recipe settings, optimizer and whether an adversary's loss trains it."""

    config: ParamGroupConfig
    optimizer: torch.optim.Optimizer
    adversary: bool


def build_optimizer(
    config: OptimConfig, params: list[torch.nn.Parameter], group: ParamGroupConfig | None = None
) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over ``params`` with the group's settings (else ``config``'s)."""
    if not params:
        raise ValueError("nothing to optimize: every parameter is frozen")
    name = (group.optimizer if group else None) or config.name
    lr = (group.lr if group else None) or config.lr
    weight_decay = config.weight_decay
    if group is not None and group.weight_decay is not None:
        weight_decay = group.weight_decay
    betas = tuple((group.betas if group else None) or config.betas)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=weight_decay)


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def build_param_groups(
    config: OptimConfig,
    named_params: list[tuple[str, torch.nn.Parameter]],
    adversary_ids: set[int],
) -> dict[str, ParamGroup]:
    """Split the trainable ``named_params`` into the recipe's groups.

    Args:
        named_params: ``(name, parameter)`` of the model (``image_encoder.…``) and
            of the losses (``loss.<term>.…``), trainable ones only.
        adversary_ids: ``id`` of each adversary parameter.

    Raises:
        ConfigError: a group selects nothing, or mixes adversary and other parameters.
    """
    taken: set[int] = set()
    groups: dict[str, ParamGroup] = {}
    for group in config.groups:
        params = [
            p for name, p in named_params if _matches(name, group.params) and id(p) not in taken
        ]
        if not params:
            raise ConfigError(
                f"optim.groups.{group.name}: no trainable parameter under {group.params}"
            )
        adversary = {id(p) in adversary_ids for p in params}
        if len(adversary) > 1:
            raise ConfigError(
                f"optim.groups.{group.name}: mixes an adversary's parameters with others"
            )
        taken.update(id(p) for p in params)
        groups[group.name] = ParamGroup(
            group, build_optimizer(config, params, group), adversary.pop()
        )
    for name, adversary in (("main", False), ("adversary", True)):
        params = [
            p
            for _, p in named_params
            if id(p) not in taken and (id(p) in adversary_ids) == adversary
        ]
        if params or name == "main":
            group = ParamGroupConfig(name=name, params=())
            groups[name] = ParamGroup(group, build_optimizer(config, params), adversary)
    return groups


def learning_rate(
    config: OptimConfig,
    stage: StageConfig,
    epoch_in_stage: int,
    step: int,
    group: ParamGroupConfig | None = None,
) -> float:
    """The lr for a step: the group's (else the stage's, else the optimizer's) base lr,
    times ``lr_drop_factor`` per passed drop epoch (the group's drops, else the
    stage's), times a linear warm-up over the run's first ``warmup_steps`` steps."""
    base = stage.lr if stage.lr is not None else config.lr
    drop_epochs = stage.lr_drop_epochs
    if group is not None:
        base = group.lr if group.lr is not None else base
        drop_epochs = group.lr_drop_epochs if group.lr_drop_epochs is not None else drop_epochs
    drops = sum(epoch_in_stage >= e for e in drop_epochs)
    lr = base * stage.lr_drop_factor**drops
    if config.warmup_steps and step < config.warmup_steps:
        lr *= (step + 1) / config.warmup_steps
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
