"""Images as users hand them over: file paths, PIL images, numpy arrays, tensors.

One image is a path (``str`` / ``Path``), a ``PIL.Image``, an array ``[H, W]`` or
``[H, W, C]`` (uint8 0..255, or float 0..1) or a tensor ``[C, H, W]`` (already
preprocessed model input; ``[F]`` for a feature model). Several are a list or tuple
of those, an array ``[N, H, W(, C)]`` or a tensor ``[N, C, H, W]`` (``[N, F]``).
The API's encoder and the search engine read images through here, so both take the
same things.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from retrievalkit.errors import InputError

ImageLike = str | Path | Image.Image | np.ndarray | Tensor


def is_one_image(images: Any, feature_dims: int = 3) -> bool:
    """Whether ``images`` is one image (not a batch); ``feature_dims``: the tensor
    rank of one item (3 for ``[C, H, W]``, 1 for a feature vector)."""
    if isinstance(images, str | Path | Image.Image):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim == 1 if feature_dims == 1 else images.ndim in (2, 3)
    if isinstance(images, Tensor):
        return images.dim() == feature_dims
    return False


def as_list(images: Any, feature_dims: int = 3) -> list[Any]:
    """One image or several -> a list of single images (a batch array or tensor is
    split along its first axis)."""
    if is_one_image(images, feature_dims):
        return [images]
    if isinstance(images, np.ndarray | Tensor):
        return list(images)
    if isinstance(images, Sequence):
        return list(images)
    raise InputError(
        f"expected an image (path, PIL image, numpy array, tensor) or a list of them, "
        f"got {type(images).__name__}"
    )


def to_pil(image: Any, mode: str = "RGB") -> Image.Image:
    """A path, PIL image or numpy array -> a PIL image in ``mode`` ("RGB" or "L");
    an unreadable file or a malformed array is an :class:`InputError` naming it."""
    if isinstance(image, str | Path):
        try:
            with Image.open(image) as opened:
                return opened.convert(mode)
        except FileNotFoundError:
            raise InputError(f"{image}: no such image file") from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise InputError(f"{image}: not a readable image ({err})") from None
    if isinstance(image, Image.Image):
        return image.convert(mode)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise InputError(f"image array: expected [H, W] or [H, W, 3|4], got {image.shape}")
        if image.dtype != np.uint8:
            if not np.issubdtype(image.dtype, np.floating):
                raise InputError(f"image array: expected uint8 or float 0..1, got {image.dtype}")
            image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        return Image.fromarray(image).convert(mode)
    raise InputError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")


def to_model_input(image: Any, transform: Any, mode: str = "RGB") -> Tensor:
    """One image -> the model's input tensor: a tensor passes as it is (already
    preprocessed), anything else goes through :func:`to_pil` and ``transform``."""
    if isinstance(image, Tensor):
        return image
    return transform(to_pil(image, mode))


def stack(images: Sequence[Any], transform: Any, mode: str = "RGB") -> Tensor:
    """Single images -> one batch ``[N, ...]`` of model input."""
    if not images:
        raise InputError("no images given")
    return torch.stack([to_model_input(image, transform, mode) for image in images])
