"""Registries of encoders: ``@IMAGE_ENCODERS.register("small_cnn")`` etc."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from retrievalkit.registry import Registry

IMAGE_ENCODERS: Registry[nn.Module] = Registry("image encoder")
TEXT_ENCODERS: Registry[nn.Module] = Registry("text encoder")


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
