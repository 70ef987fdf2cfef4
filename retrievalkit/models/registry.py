"""Registries of encoders: ``@IMAGE_ENCODERS.register("small_cnn")`` etc."""

from __future__ import annotations

from typing import Any

from torch import nn

from retrievalkit.registry import Registry

IMAGE_ENCODERS: Registry[nn.Module] = Registry("image encoder")
TEXT_ENCODERS: Registry[nn.Module] = Registry("text encoder")


def build_image_encoder(name: str, **options: Any) -> nn.Module:
    import retrievalkit.models  # noqa: F401  (registers the encoders)

    return IMAGE_ENCODERS.build(name, **options)


def build_text_encoder(name: str, vocab: Any | None = None, **options: Any) -> nn.Module:
    """Build a text encoder; ``vocab`` is passed to encoders that take one."""
    import inspect

    import retrievalkit.models  # noqa: F401

    factory = TEXT_ENCODERS.get(name)
    if "vocab" in inspect.signature(factory).parameters:
        if vocab is None:
            raise ValueError(f"text encoder {name!r} needs a vocabulary")
        options = {"vocab": vocab, **options}
    return TEXT_ENCODERS.build(name, **options)
