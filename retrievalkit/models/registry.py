"""Registries of encoders and models: ``@IMAGE_ENCODERS.register("small_cnn")``,
``@MODELS.register("dual_encoder")`` etc.

A model factory takes one :class:`ModelSpec` (the recipe's ``model`` section and
the run's vocabulary) and returns a ``RetrievalModel``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from retrievalkit.registry import Registry

IMAGE_ENCODERS: Registry[nn.Module] = Registry("image encoder")
TEXT_ENCODERS: Registry[nn.Module] = Registry("text encoder")
MODELS: Registry[nn.Module] = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """What a model factory gets: encoder dicts ``{"name": ..., "head": ..., **options}``,
    the joint size, the vocabulary (GRU/TextCNN text encoders) and model options."""

    image: dict[str, Any]
    text: dict[str, Any] | None = None
    embed_dim: int = 1024
    vocab: Any | None = None
    options: dict[str, Any] = field(default_factory=dict)


def default_model_name(has_text: bool) -> str:
    """The model of a recipe that names none: a dual encoder when it has a text tower."""
    return "dual_encoder" if has_text else "embedding"


def build_model(name: str, spec: ModelSpec) -> nn.Module:
    """Build the registered model ``name`` from ``spec``."""
    import retrievalkit.models  # noqa: F401  (registers the models)

    return MODELS.get(name)(spec)


def encoder_options(registry: Registry[nn.Module], name: str) -> list[str]:
    """The keyword options the encoder ``name`` accepts (``vocab`` included if it takes one)."""
    parameters = inspect.signature(registry.get(name)).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in kinds]


def _check_options(registry: Registry[nn.Module], name: str, options: dict[str, Any]) -> None:
    accepted = encoder_options(registry, name)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        shown = ", ".join(repr(key) for key in unknown)
        raise TypeError(
            f"cannot build {registry.kind} {name!r}: unknown option {shown}; "
            f"it accepts {', '.join(accepted) or '(no options)'}"
        )


def build_image_encoder(name: str, **options: Any) -> nn.Module:
    """Build a registered image encoder; an unknown option names the encoder and option."""
    import retrievalkit.models  # noqa: F401  (registers the encoders)

    _check_options(IMAGE_ENCODERS, name, options)
    return IMAGE_ENCODERS.build(name, **options)


def build_text_encoder(name: str, vocab: Any | None = None, **options: Any) -> nn.Module:
    """Build a text encoder; ``vocab`` is passed to encoders that take one (GRU, TextCNN)."""
    import retrievalkit.models  # noqa: F401

    _check_options(TEXT_ENCODERS, name, options)
    if "vocab" in encoder_options(TEXT_ENCODERS, name):
        if vocab is None:
            raise ValueError(f"text encoder {name!r} needs a vocabulary (vocab=...)")
        options = {"vocab": vocab, **options}
    return TEXT_ENCODERS.build(name, **options)
