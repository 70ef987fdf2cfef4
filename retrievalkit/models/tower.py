"""The image-tower contract: what an image encoder takes and which part of it is frozen.

Every image encoder may declare two things (the defaults suit a tower trained from
scratch on images):

- ``image_input`` (:class:`ImageInput`): the input it takes, images (square side,
  channels, the normalization its weights expect) or feature vectors ``[F]``. The
  data transforms, ``rk.load``, ``search``, ``serve``, ``index`` and ONNX export all
  build the preprocessing from it, so an indexed image and a query image go through
  the same path.
- ``frozen_trunk`` (:class:`FrozenTrunk`, or None): a frozen first part whose output
  is a pure function of the input. Its outputs are computed once per image and cached
  on disk (``pipeline/tower_cache.py``); the encoder's ``forward`` then takes either
  images or such cached outputs (``[B, *cached_shape]``) and runs only what follows.

``image_input_of(model)`` / ``frozen_trunk_of(model)`` read them from a model
(its ``image_encoder``, or ``encoder`` for an image-only model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN, GREY_STD = (0.5,), (0.5,)


@dataclass(frozen=True)
class ImageInput:
    """What an image encoder takes.

    Attributes:
        kind: "image" (``[B, channels, size, size]``) or "feature" (``[B, dim]``).
        size: the square side in pixels; None = the recipe's ``data.image_size``.
        channels: 3 (RGB) or 1 (greyscale).
        mean, std: per-channel normalization of pixels in [0, 1] (RGB); greyscale
            input uses 0.5 / 0.5.
        dim: the feature size (kind "feature").
    """

    kind: Literal["image", "feature"] = "image"
    size: int | None = None
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    dim: int | None = None

    def side(self, recipe_size: int) -> int:
        """The input side: the encoder's own, else the recipe's ``data.image_size``."""
        return int(self.size or recipe_size)

    def example(self, batch: int, recipe_size: int) -> Tensor:
        """Random inputs shaped as the encoder takes them: ``[batch, C, S, S]`` or ``[batch, F]``."""
        if self.kind == "feature":
            return torch.randn(batch, int(self.dim or 2048))
        side = self.side(recipe_size)
        return torch.randn(batch, self.channels, side, side)

    def pixel_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` the images are normalized with (greyscale: 0.5 / 0.5)."""
        return (GREY_MEAN, GREY_STD) if self.channels == 1 else (self.mean, self.std)


@runtime_checkable
class FrozenTrunk(Protocol):
    """A frozen, deterministic first part of an image encoder.

    Attributes:
        cache_id: names the trunk's function exactly (network, weights, input side,
            where it is cut, pooling): equal ids give equal outputs.
        cached_shape: the shape of one output row, e.g. ``(1280,)`` or ``(192, 7, 7)``.
    """

    cache_id: str
    cached_shape: tuple[int, ...]

    def trunk(self, images: Tensor) -> Tensor:
        """``[B, C, S, S]`` normalized images -> ``[B, *cached_shape]`` (no grad)."""
        ...


def image_encoder_of(model: nn.Module) -> nn.Module | None:
    """The image encoder of a retrieval model (``image_encoder`` or ``encoder``)."""
    for name in ("image_encoder", "encoder"):
        encoder = getattr(model, name, None)
        if isinstance(encoder, nn.Module):
            return encoder
    return None


def image_input_of(model_or_encoder: nn.Module) -> ImageInput:
    """The declared input of a model's (or an encoder's) image tower; default: images
    at the recipe's size, ImageNet normalization."""
    declared = getattr(model_or_encoder, "image_input", None)
    if isinstance(declared, ImageInput):
        return declared
    encoder = image_encoder_of(model_or_encoder)
    declared = getattr(encoder, "image_input", None) if encoder is not None else None
    if isinstance(declared, ImageInput):
        return declared
    channels = int(getattr(encoder, "in_channels", 3) or 3)
    return ImageInput(channels=channels)


def frozen_trunk_of(model_or_encoder: nn.Module) -> FrozenTrunk | None:
    """The frozen trunk a model's image encoder declares (None: nothing to cache)."""
    for candidate in (model_or_encoder, image_encoder_of(model_or_encoder)):
        trunk = getattr(candidate, "frozen_trunk", None) if candidate is not None else None
        if trunk is not None:
            return trunk
    return None
