"""Setting a run up from its recipe: data, vocabulary, model, losses, objectives,
optimizer groups and the training inputs, in the order the trainer builds them
(the order fixes the RNG draws, so a seed gives the same run).

Each function is one seam: what the data a run trains on is (:func:`load_run_splits`,
:func:`build_train_inputs`), what trains (:func:`build_run_model`,
:func:`build_run_losses`, :func:`build_objectives`) and how (:func:`build_optimizers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from retrievalkit.pipeline.build import (
    build_model,
    build_vocab,
    load_splits,
    model_transform,
    require_split,
)
from retrievalkit.run.checkpoint import VOCAB_FILE
from retrievalkit.run.config import ConfigError, DataConfig, OptimConfig, RunConfig
from retrievalkit.training.data_loading import TowerViews, prepare_train_images
from retrievalkit.training.distributed import Runtime, for_ranks, sync_batchnorm
from retrievalkit.training.objective import (
    Objective,
    adversary_parameters,
    build_loss_modules,
    loss_keys,
)
from retrievalkit.training.optim import ParamGroup, build_param_groups


def load_run_splits(
    data: DataConfig, splits: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any, Any | None]:
    """``(all splits, train split, val split or None)``; ``splits`` given are used as they are."""
    splits = splits if splits is not None else load_splits(data)
    train_split = require_split(splits, data.train_split, data.name)
    val_split = splits.get(data.val_split) if data.val_split else None
    return splits, train_split, val_split


def build_run_vocab(
    config: RunConfig, train_split: Any, run_dir: Path, write: bool
) -> tuple[Any, Path | None]:
    """The recipe's vocabulary (None without a word-level text encoder) and where the
    run keeps it (``run_dir/vocab.json``, written when ``write``: rank 0)."""
    vocab = build_vocab(config.model, train_split)
    if vocab is None:
        return None, None
    path = run_dir / VOCAB_FILE
    if write:
        vocab.save(path)
    return vocab, path


def build_run_model(config: RunConfig, vocab: Any, runtime: Runtime) -> torch.nn.Module:
    """The recipe's model on the runtime's device (BatchNorm synced across ranks if asked)."""
    model = build_model(config, vocab).to(runtime.device)
    if config.distributed.sync_batchnorm:
        model = sync_batchnorm(model, runtime)
    return model


def build_run_losses(
    config: RunConfig, train_split: Any, runtime: Runtime
) -> tuple[torch.nn.ModuleDict, torch.nn.ModuleDict]:
    """``(losses, rank_losses)``: the loss terms' modules, and each as a rank calls it
    (gathered across ranks and scaled, ``distributed.gather``)."""
    context = {"num_instances": len(train_split.images), "dim": config.model.embed_dim}
    losses = build_loss_modules(config, context).to(runtime.device)
    rank_losses = torch.nn.ModuleDict(
        {
            key: for_ranks(module, runtime, config.distributed.gather)
            for key, module in losses.items()
        }
    )
    return losses, rank_losses


def build_objectives(
    config: RunConfig, model: torch.nn.Module, rank_losses: torch.nn.ModuleDict
) -> dict[str, Objective]:
    """One objective per stage, its inputs checked against the model's outputs."""
    available = set(model.output_names) | {"ids", "images"}
    model_name = f"model {config.model.name or type(model).__name__!r}"
    keys = loss_keys(config)
    objectives = {}
    for stage in config.stages:
        try:
            objectives[stage.name] = Objective(stage, rank_losses, keys, available, model_name)
        except ConfigError as err:
            raise ConfigError(f"{config.name}: {err}") from None
    return objectives


def trainable_named_parameters(
    model: torch.nn.Module, losses: torch.nn.ModuleDict
) -> list[tuple[str, torch.nn.Parameter]]:
    """Model parameters by module name, then the losses' as ``loss.<term>.…``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named += [(f"loss.{n}", p) for n, p in losses.named_parameters() if p.requires_grad]
    return named


def build_optimizers(
    optim: OptimConfig, model: torch.nn.Module, losses: torch.nn.ModuleDict
) -> dict[str, ParamGroup]:
    """The optimizer groups: ``main``, an ``adversary`` group for discriminators, and
    the recipe's own ``optim.groups``."""
    return build_param_groups(
        optim,
        trainable_named_parameters(model, losses),
        {id(p) for p in adversary_parameters(losses)},
    )


def build_train_inputs(
    data: DataConfig, train_split: Any, model: torch.nn.Module, progress: bool = False
) -> tuple[Any, Any, Any, Any]:
    """``(train transform, eval transform, loader split, loader transform)``: what the
    training loader reads (images transformed once up front when that is exact; a
    frozen image tower's cached trunk outputs, ``data.views`` per image). The
    transforms are the image tower's declared input (``models/tower.py``)."""
    kind = train_split.images.kind
    train_transform = model_transform(model, data, True, kind)
    eval_transform = model_transform(model, data, False, kind)
    loader_split, loader_transform = prepare_train_images(
        train_split,
        train_transform,
        data.augment,
        tower=TowerViews(model, eval_transform, data.views, progress),
    )
    return train_transform, eval_transform, loader_split, loader_transform


def warm_text_cache(
    model: torch.nn.Module, train_split: Any, val_split: Any | None, progress: bool
) -> None:
    """Let a frozen text encoder encode all captions once, in large batches."""
    text_encoder = getattr(model, "text_encoder", None)
    if text_encoder is not None and hasattr(text_encoder, "warm_cache"):
        captions = list(train_split.captions)
        if val_split is not None:
            captions += list(val_split.captions)
        text_encoder.warm_cache(captions, progress=progress)
