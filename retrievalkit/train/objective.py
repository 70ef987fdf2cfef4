"""Training objectives: weighted sums of registered losses, one per stage.

Loss modules are built once per run (``build_loss_modules``) and shared by the
stages that use them, so a loss with parameters (the instance-loss classifier)
or state (a cross-batch memory) carries over from stage 1 to stage 2, is
optimized (the trainer adds their parameters to the optimizer) and is saved in
checkpoints under ``loss.*``.

How a term is called depends on the task, not on its name:
- metric task: ``loss(embeddings [B, E], labels [B])`` (a ``PairLoss``);
- cross-modal task: ``loss(img [B, E], txt [B, E], image_ids [B])`` (VSE, instance).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from retrievalkit.losses import build_loss
from retrievalkit.losses.adversarial import is_adversarial
from retrievalkit.losses.core import PairLoss
from retrievalkit.losses.registry import LOSSES
from retrievalkit.run.config import ConfigError, RunConfig, StageConfig


@dataclass
class LossOutput:
    """The weighted total (in the graph) and each term's unweighted value (floats)."""

    total: Tensor
    parts: dict[str, float]


def _context_options(name: str, options: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Fill options the recipe may leave out (``num_instances``, ``dim``) from the run."""
    accepted = inspect.signature(LOSSES.get(name)).parameters
    filled = dict(options)
    for key, value in context.items():
        if key in accepted and key not in filled:
            filled[key] = value
    return filled


def loss_keys(config: RunConfig) -> dict[tuple[str, str], str]:
    """Module key of each (stage, loss name): the loss name, or ``name@stage`` when an
    earlier stage used the same loss with other options (e.g. SH then MH)."""
    keys: dict[tuple[str, str], str] = {}
    options_of: dict[str, dict[str, Any]] = {}
    for stage in config.stages:
        for term in stage.losses:
            key = term.name
            if key in options_of and options_of[key] != term.options:
                key = f"{term.name}@{stage.name}"
            options_of.setdefault(key, term.options)
            keys[(stage.name, term.name)] = key
    return keys


def build_loss_modules(config: RunConfig, context: dict[str, Any]) -> nn.ModuleDict:
    """One module per distinct (loss, options) of the run, shared by the stages using it.

    Args:
        context: run facts a loss may need, e.g. ``{"num_instances": N, "dim": E}``.
    """
    modules = nn.ModuleDict()
    keys = loss_keys(config)
    for stage in config.stages:
        for term in stage.losses:
            key = keys[(stage.name, term.name)]
            if key not in modules:
                options = _context_options(term.name, term.options, context)
                modules[key] = build_loss(term.name, **options)
    return modules


class Objective:
    """The loss of one stage: ``sum_t weight_t * loss_t``."""

    def __init__(
        self,
        stage: StageConfig,
        modules: nn.ModuleDict,
        keys: dict[tuple[str, str], str],
        task: str,
    ) -> None:
        self.task = task
        self.terms = [
            (term.name, term.weight, modules[keys[(stage.name, term.name)]])
            for term in stage.losses
        ]
        for name, _, module in self.terms:
            is_pair = isinstance(module, PairLoss)
            if task == "metric" and not is_pair:
                raise ConfigError(f"loss {name!r} is cross-modal; the recipe's task is metric")
            if task == "cross_modal" and is_pair:
                raise ConfigError(
                    f"loss {name!r} takes labelled embeddings; use a cross-modal loss "
                    "(vse, instance) for task cross_modal"
                )

    def __call__(self, outputs: tuple[Tensor, ...], ids: Tensor) -> LossOutput:
        """``outputs``: ``(emb,)`` (metric) or ``(img, txt)`` (cross-modal); ``ids [B]``."""
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, weight, module in self.terms:
            value = module(*outputs, ids)
            parts[name] = float(value.detach())
            total = value * weight if total is None else total + value * weight
        assert total is not None
        parts["total"] = float(total.detach())
        return LossOutput(total=total, parts=parts)

    @property
    def has_adversary(self) -> bool:
        return any(is_adversarial(module) for _, _, module in self.terms)

    def adversary_loss(self, outputs: tuple[Tensor, ...], ids: Tensor) -> Tensor | None:
        """Sum of the adversarial terms' adversary losses on the detached outputs
        (None without such a term)."""
        values = [
            module.adversary_loss(outputs, ids)
            for _, _, module in self.terms
            if is_adversarial(module)
        ]
        return torch.stack(values).sum() if values else None

    def collapsed_values(self, batch_size: int) -> dict[str, float]:
        """Per term, its value at collapse where the loss knows it (VSE++ MH: ``2 B margin``)."""
        values = {}
        for name, _, module in self.terms:
            collapsed = getattr(module, "collapsed_value", None)
            value = collapsed(batch_size) if callable(collapsed) else None
            if value is not None:
                values[name] = float(value)
        return values


def adversary_parameters(modules: nn.ModuleDict) -> list[torch.nn.Parameter]:
    """Parameters of the losses' adversaries (discriminators): their own optimizer."""
    params: list[torch.nn.Parameter] = []
    for module in modules.values():
        if is_adversarial(module):
            params.extend(p for p in module.adversary_parameters() if p.requires_grad)
    return params


def trainable_loss_parameters(modules: nn.ModuleDict) -> list[torch.nn.Parameter]:
    """Parameters owned by losses (e.g. the shared instance classifier), adversaries
    excluded (see :func:`adversary_parameters`)."""
    adversary = {id(p) for p in adversary_parameters(modules)}
    return [p for p in modules.parameters() if p.requires_grad and id(p) not in adversary]
