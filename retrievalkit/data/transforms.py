"""Item -> tensor transforms: training augmentation and evaluation resizing.

Images become float ``[C, H, W]`` normalized with the image encoder's declared
statistics (RGB; ImageNet's by default) or mean 0.5 / std 0.5 (greyscale); features pass through as float32 ``[F]``.
The crop/resize steps use ``torchvision.transforms.v2`` when it is installed and
the same steps written in PIL otherwise. Randomness comes from torch's global
RNG (which checkpoints save and restore).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def _to_tensor(
    image: Image.Image,
    mean: tuple[float, ...] = RGB_MEAN,
    std: tuple[float, ...] = RGB_STD,
) -> Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        tensor = torch.from_numpy(array)[None]
        return (tensor - 0.5) / 0.5
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float]) -> Image.Image:
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale))
        ratio = float(torch.exp(torch.empty(1).uniform_(np.log(3 / 4), np.log(4 / 3))))
        w = round((target * ratio) ** 0.5)
        h = round((target / ratio) ** 0.5)
        if 0 < w <= width and 0 < h <= height:
            left = int(torch.randint(0, width - w + 1, (1,)))
            top = int(torch.randint(0, height - h + 1, (1,)))
            return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    return image.resize((size, size), Image.BILINEAR)


def _center_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and crop the centre square."""
    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _torchvision_geometry(
    image_size: int, train: bool, crop_scale: tuple[float, float], flip: bool
) -> Callable[[Image.Image], Image.Image] | None:
    """The crop/resize/flip steps from ``torchvision.transforms.v2`` (None if missing)."""
    try:
        from torchvision.transforms import v2
    except ImportError:
        return None
    if train:
        steps = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
    else:
        steps = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(steps)


def _pil_geometry(
    image_size: int, train: bool, crop_scale: tuple[float, float], flip: bool
) -> Callable[[Image.Image], Image.Image]:
    def geometry(image: Image.Image) -> Image.Image:
        if not train:
            return _center_resize(image, image_size)
        image = _random_resized_crop(image, image_size, crop_scale)
        if flip and bool(torch.rand(1) < 0.5):
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    return geometry


def build_transform(
    kind: str,
    image_size: int,
    train: bool,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    flip: bool = False,
    grayscale: bool | None = None,
    backend: str = "auto",
    mean: tuple[float, ...] = RGB_MEAN,
    std: tuple[float, ...] = RGB_STD,
) -> Callable[[Any], Tensor]:
    """A transform for items of ``kind`` "image" or "feature".

    Images (PIL or uint8 array) -> float ``[3, H, W]`` (``[1, H, W]`` for greyscale
    input unless ``grayscale=False``), ``H = W = image_size``, normalized.
    Training: random resized crop (``crop_scale`` of the area, aspect 3/4..4/3)
    and, if ``flip``, a horizontal flip (off by default: a flipped emoji or letter
    is another thing). Evaluation: resize the short side, centre-crop.
    ``backend``: "torchvision" (``transforms.v2``), "pil" (the same steps in PIL),
    or "auto" (torchvision when importable). Both draw from torch's global RNG,
    which checkpoints save and restore. Features pass through as float32 tensors.
    RGB pixels in [0, 1] are normalized with ``mean`` / ``std`` (the image encoder
    declares them: ``models/tower.py``), greyscale ones with 0.5 / 0.5.
    """
    if kind == "feature":
        return lambda item: torch.as_tensor(np.asarray(item, dtype=np.float32))
    if kind != "image":
        raise ValueError(f"unknown source kind {kind!r}; expected 'image' or 'feature'")
    if backend not in ("auto", "torchvision", "pil"):
        raise ValueError(f"unknown backend {backend!r}; expected auto, torchvision or pil")
    geometry = None
    if backend != "pil":
        geometry = _torchvision_geometry(image_size, train, crop_scale, flip)
        if geometry is None and backend == "torchvision":
            raise ImportError("backend='torchvision' needs torchvision (pip install torchvision)")
    geometry = geometry or _pil_geometry(image_size, train, crop_scale, flip)

    def transform(image: Any) -> Tensor:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if grayscale is True and image.mode != "L":
            image = image.convert("L")
        elif grayscale is False or image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        return _to_tensor(geometry(image), mean, std)

    return transform
