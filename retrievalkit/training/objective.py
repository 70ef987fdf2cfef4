"""Training objectives: weighted sums of registered losses, one per stage.

Loss modules are built once per run (``build_loss_modules``) and shared by the
stages that use them, so a loss with parameters (the instance-loss classifier)
or state (a cross-batch memory) carries over from stage 1 to stage 2, is
optimized (the trainer adds their parameters to the optimizer) and is saved in
checkpoints under ``loss.*``.

A term is called with keyword arguments taken by name from the step's
namespace: the model's named outputs (``image``, ``text``, ``embedding``,
``image.se``, ...) and the batch's fields (``ids``, ``images``). Each loss class
declares its arguments and their default sources (``default_inputs``, e.g. VSE++
``{img: image, txt: text, img_ids: ids}``); the recipe's ``inputs:`` overrides
them per argument. A name the model does not produce is a ``ConfigError``
naming the term, the argument and what the model produces.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from retrievalkit.losses import build_loss
from retrievalkit.losses.adversarial import is_adversarial
from retrievalkit.losses.registry import LOSSES
from retrievalkit.run.config import ConfigError, LossTerm, RunConfig, StageConfig


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


def resolve_inputs(term: LossTerm, module: nn.Module) -> dict[str, str]:
    """The term's ``argument -> source name`` map: the loss's defaults, then the recipe's."""
    defaults = getattr(module, "default_inputs", None)
    if defaults is None:
        raise ConfigError(f"loss {term.name!r} declares no inputs (default_inputs)")
    unknown = sorted(set(term.inputs) - set(defaults))
    if unknown:
        raise ConfigError(
            f"loss {term.name!r}: unknown input(s) {unknown}; it takes {list(defaults)}"
        )
    return {**defaults, **term.inputs}


class Objective:
    """The loss of one stage: ``sum_t weight_t * loss_t(**inputs_t)``.

    Args:
        available: every name a step provides (the model's ``output_names`` and
            the batch fields); a term asking for another one is a ``ConfigError``.
    """

    def __init__(
        self,
        stage: StageConfig,
        modules: nn.ModuleDict,
        keys: dict[tuple[str, str], str],
        available: Collection[str],
        model_name: str = "the model",
    ) -> None:
        self.terms: list[tuple[str, float, nn.Module, dict[str, str]]] = []
        for term in stage.losses:
            module = modules[keys[(stage.name, term.name)]]
            inputs = resolve_inputs(term, module)
            for argument, source in inputs.items():
                if source not in available:
                    raise ConfigError(
                        f"stage {stage.name!r}, loss {term.name!r}: input {argument}={source!r} "
                        f"is not produced by {model_name}; it produces {sorted(available)}"
                    )
            self.terms.append((term.name, term.weight, module, inputs))

    @property
    def input_names(self) -> set[str]:
        """Every name the stage's terms read."""
        return {source for *_, inputs in self.terms for source in inputs.values()}

    def __call__(self, namespace: Mapping[str, Tensor]) -> LossOutput:
        """``namespace``: the model's outputs and the batch fields, by name."""
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, weight, module, inputs in self.terms:
            value = module(**{arg: namespace[source] for arg, source in inputs.items()})
            parts[name] = float(value.detach())
            total = value * weight if total is None else total + value * weight
        assert total is not None
        parts["total"] = float(total.detach())
        return LossOutput(total=total, parts=parts)

    @property
    def has_adversary(self) -> bool:
        return any(is_adversarial(module) for _, _, module, _ in self.terms)

    def adversary_loss(self, namespace: Mapping[str, Tensor]) -> Tensor | None:
        """Sum of the adversarial terms' adversary losses on the detached inputs (None
        without such a term). Each gets ``adversary_loss(inputs, ids)``: its inputs in
        declared order, the last one (its ids) apart."""
        values = []
        for _, _, module, inputs in self.terms:
            if is_adversarial(module):
                tensors = [namespace[source].detach() for source in inputs.values()]
                values.append(module.adversary_loss(tuple(tensors[:-1]), tensors[-1]))
        return torch.stack(values).sum() if values else None

    def adversary_stats(self) -> dict[str, float]:
        """What the adversarial terms report about their last adversary step (e.g. the
        mFSR image term's D1 accuracies), as ``<term>.<stat>`` floats."""
        stats: dict[str, float] = {}
        for name, _, module, _ in self.terms:
            report = getattr(module, "adversary_stats", None)
            if callable(report):
                stats.update({f"{name}.{key}": value for key, value in report().items()})
        return stats

    def adversary_collapse(self) -> list[str]:
        """Reasons, per adversarial term that can tell, why its generator looks collapsed."""
        reasons: list[str] = []
        for name, _, module, _ in self.terms:
            check = getattr(module, "collapse_reasons", None)
            if callable(check):
                reasons += [f"{name}: {reason}" for reason in check()]
        return reasons

    def collapsed_values(self, batch_size: int) -> dict[str, float]:
        """Per term, its value at collapse where the loss knows it (VSE++ MH: ``2 B margin``)."""
        values = {}
        for name, _, module, _ in self.terms:
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
