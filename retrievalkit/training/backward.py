"""One step's loss and backward: a plain forward or gradient caching, in one
process or as one rank of a data-parallel run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from retrievalkit.models import Tower
from retrievalkit.run.config import ConfigError
from retrievalkit.training.distributed import Runtime, mean_over_ranks
from retrievalkit.training.grad_cache import grad_cache_backward
from retrievalkit.training.objective import Objective


@dataclass
class Backward:
    """What a step computed: the names the losses read (model outputs and batch
    fields), the loss parts (mean over ranks) and whether gradients were made."""

    namespace: dict[str, Any]
    parts: dict[str, float]
    finite: bool


def cached_towers(model: nn.Module, objective: Objective) -> list[Tower]:
    """The model's towers for a gradient-cached step (the stage must read only them)."""
    towers = model.towers()
    provided = {t.output for t in towers or []} | {"ids", "images"}
    if towers is None or not objective.input_names <= provided:
        raise ConfigError(
            f"optim.grad_cache_chunk: the losses read {sorted(objective.input_names)}, "
            f"but gradient caching can only re-encode the model's towers "
            f"{sorted(t.output for t in towers or [])}"
        )
    return towers


def loss_backward(
    model: nn.Module,
    forward_model: nn.Module,
    objective: Objective,
    fields: dict[str, Any],
    chunk: int | None,
    runtime: Runtime,
) -> Backward:
    """Compute the stage's loss on ``fields`` and back-propagate it when finite.

    ``forward_model`` is ``model`` or its DDP wrapper. With ``chunk`` the towers of
    ``model`` are encoded chunk by chunk (gradient caching, bypassing DDP's hooks:
    the caller averages those gradients). Every rank decides the skip from the
    same numbers: the parts' mean over ranks.
    """
    parts: dict[str, float] = {}

    def decide(result: Any) -> bool:
        parts.update(mean_over_ranks(result.parts, runtime))
        return math.isfinite(parts["total"])

    if chunk:
        towers = cached_towers(model, objective)
        names = [tower.output for tower in towers]
        embeddings, _, finite = grad_cache_backward(
            [tower.encode for tower in towers],
            [fields[tower.input] for tower in towers],
            loss_fn=lambda embs: objective({**fields, **dict(zip(names, embs))}),
            chunk_size=chunk,
            modules=[model],
            total=lambda loss: loss.total,
            is_finite=decide,
        )
        return Backward({**fields, **dict(zip(names, embeddings))}, parts, finite)
    outputs = forward_model(**{name: fields[name] for name in model.inputs})
    namespace = {**fields, **outputs}
    result = objective(namespace)
    finite = decide(result)
    if finite:
        result.total.backward()
    return Backward(namespace, parts, finite)
