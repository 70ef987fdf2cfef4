"""Build datasets, vocabulary, transforms and the model from a :class:`RunConfig`."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch

from retrievalkit.errors import UnknownNameError
from retrievalkit.models.tower import ImageInput, image_input_of
from retrievalkit.run.config import ConfigError, DataConfig, ModelConfig, RunConfig

log = logging.getLogger(__name__)


def load_splits(data: DataConfig) -> dict[str, Any]:
    """All splits of the recipe's dataset, keyed by split name."""
    from retrievalkit.data import load_dataset

    return load_dataset(data.name, **data.options)


def require_split(splits: dict[str, Any], name: str, dataset: str) -> Any:
    if name not in splits:
        raise UnknownNameError(
            f"dataset {dataset!r} has no split {name!r}; it has {sorted(splits)}"
        )
    return splits[name]


def text_encoder_needs_vocab(model: ModelConfig) -> bool:
    """True when the recipe's text encoder takes a ``vocab`` argument (GRU, TextCNN)."""
    if model.text is None:
        return False
    from retrievalkit.models.registry import TEXT_ENCODERS

    factory = TEXT_ENCODERS.get(model.text["name"])
    return "vocab" in inspect.signature(factory).parameters


def build_vocab(model: ModelConfig, train_split: Any) -> Any | None:
    """A vocabulary from the training captions, or None if the encoder needs none."""
    if not text_encoder_needs_vocab(model):
        return None
    from retrievalkit.data import Vocabulary

    vocab = Vocabulary.build(train_split.captions, min_count=model.vocab_min_count)
    log.info("vocabulary: %d words from %d captions", len(vocab), len(train_split.captions))
    return vocab


def load_vocab(path: Path) -> Any:
    from retrievalkit.data import Vocabulary

    return Vocabulary.load(path)


def build_model(config: RunConfig, vocab: Any | None = None) -> torch.nn.Module:
    """The recipe's registered model (``model.name``; default ``dual_encoder`` with a
    text encoder, ``embedding`` without).

    Raises:
        ConfigError: unknown model or options, or a ``task`` that disagrees with it.
    """
    from retrievalkit.models import ModelSpec, default_model_name
    from retrievalkit.models import build_model as build_registered

    model = config.model
    name = model.name or default_model_name(model.text is not None)
    spec = ModelSpec(
        image=dict(model.image),
        text=dict(model.text) if model.text is not None else None,
        embed_dim=model.embed_dim,
        vocab=vocab,
        options=dict(model.options),
    )
    try:
        built = build_registered(name, spec)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"model {name!r}: {err}") from err
    if config.task is not None and (config.task == "cross_modal") != built.has_text:
        kind = "image <-> text" if built.has_text else "image-only"
        raise ConfigError(f"task {config.task!r} disagrees with model {name!r} ({kind})")
    return built


def build_transform(kind: str | ImageInput, data: DataConfig, train: bool) -> Any:
    """Item -> tensor for an image tower's declared input (an :class:`ImageInput`: its
    side, else the recipe's ``data.image_size``, and its normalization) or for a
    source of ``kind`` "image" / "feature" (features pass through)."""
    from retrievalkit.data.transforms import build_transform as data_transform

    spec = kind if isinstance(kind, ImageInput) else ImageInput(kind=kind)  # type: ignore[arg-type]
    mean, std = spec.pixel_normalization()
    return data_transform(
        kind=spec.kind,
        image_size=spec.side(data.image_size),
        train=train and data.augment,
        mean=mean,
        std=std,
    )


def model_transform(
    model: torch.nn.Module, data: DataConfig, train: bool, source_kind: str | None = None
) -> Any:
    """The transform of the items a model's image tower takes, as it declares them
    (``models/tower.py``); ``source_kind`` ("image" / "feature", what a data source
    holds) must match the declared kind."""
    spec = image_input_of(model)
    if source_kind is not None and source_kind != spec.kind:
        raise ConfigError(
            f"data {data.name!r} gives {source_kind} items but the model's image encoder "
            f"takes {spec.kind} items (model.image.name)"
        )
    return build_transform(spec, data, train)
