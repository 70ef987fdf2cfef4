"""The typed interface every run reads data through.

An ``ImageSource`` is N loadable items (RGB images or feature vectors). A split
is a source plus what describes its items: captions with their image
(``CrossModalSplit``) or class labels (``LabelledSplit``). "5 captions per image"
is data here (``caption_image``), never a constant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from retrievalkit.data.errors import DataError

log = logging.getLogger(__name__)


class ImageSource(Protocol):
    """N items; ``load(i)`` gives an RGB/L ``PIL.Image`` or a feature vector ``[F]``."""

    kind: Literal["image", "feature"]

    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image | np.ndarray: ...


class ArrayImageSource:
    """Images held in memory: uint8 ``[N, H, W, 3]`` (RGB) or ``[N, H, W]`` (grey)."""

    kind: Literal["image", "feature"] = "image"

    def __init__(self, pixels: np.ndarray) -> None:
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4):
            raise ValueError(f"expected uint8 [N, H, W(, 3)], got {pixels.dtype} {pixels.shape}")
        self.pixels = pixels

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index])


class FileImageSource:
    """Image files on disk, opened lazily; a bad file raises :class:`DataError`."""

    kind: Literal["image", "feature"] = "image"

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise DataError(path, "image file is missing", item=f"item {index}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(
                path, f"not a readable image ({err})", "a JPEG/PNG file", item=f"item {index}"
            ) from None


class FeatureSource:
    """Precomputed features ``[R, F]`` or ``[R, regions, F]`` (e.g. a memory-mapped ``.npy``).

    Item ``i`` is row ``rows[i]`` (or row ``i`` without ``rows``): ``load`` gives a
    float32 copy of shape ``features.shape[1:]``. ``rows`` serves files that store one
    row per caption (vsepp's COCO train): item ``i`` -> its image's first row.
    """

    kind: Literal["image", "feature"] = "feature"

    def __init__(self, features: np.ndarray, rows: np.ndarray | None = None) -> None:
        if features.ndim < 2:
            raise ValueError(f"expected features [N, F] (or [N, R, F]), got shape {features.shape}")
        if rows is not None and len(rows) and (rows.min() < 0 or rows.max() >= len(features)):
            raise ValueError(f"rows point outside the {len(features)} feature rows")
        self.features = features
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.features.shape[0]

    def load(self, index: int) -> np.ndarray:
        row = int(self.rows[index]) if self.rows is not None else index
        return np.asarray(self.features[row], dtype=np.float32)


@dataclass(frozen=True)
class CrossModalSplit:
    """Images and captions; ``caption_image[m]`` is the image of caption ``m``.

    Attributes:
        images: N images. image_keys: N display keys (emoji, file path, COCO id);
            images sharing a key are pictures of one item (an emoji in several art
            styles): their captions are the same, so they are never negatives of
            each other in a batch, and search shows one hit per key.
        captions: M captions. caption_image: int64 ``[M]`` in ``[0, N)``.
        source: where the files came from.
        image_styles: N style names (emoji art styles), or None.
    """

    name: str
    images: ImageSource
    image_keys: list[str]
    captions: list[str]
    caption_image: np.ndarray
    source: str
    image_styles: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.image_keys) != len(self.images):
            raise ValueError(
                f"{self.name}: {len(self.image_keys)} keys for {len(self.images)} images"
            )
        if self.image_styles is not None and len(self.image_styles) != len(self.images):
            raise ValueError(f"{self.name}: image_styles must have one entry per image")
        if len(self.captions) != len(self.caption_image):
            raise ValueError(f"{self.name}: caption_image must have one entry per caption")
        if len(self.caption_image) and (
            self.caption_image.min() < 0 or self.caption_image.max() >= len(self.images)
        ):
            raise ValueError(
                f"{self.name}: caption_image points outside the {len(self.images)} images"
            )

    @property
    def caption_groups(self) -> np.ndarray:
        """int64 ``[M]``: the key of each caption's image as a number (captions of
        images with one key share it; equals ``caption_image`` when keys are unique)."""
        ids: dict[str, int] = {}
        key_id = np.asarray([ids.setdefault(k, len(ids)) for k in self.image_keys], np.int64)
        return key_id[self.caption_image] if len(self.caption_image) else self.caption_image


@dataclass(frozen=True)
class LabelledSplit:
    """Images with class labels (metric learning); ``image_styles``: N style names or None."""

    name: str
    images: ImageSource
    labels: np.ndarray
    keys: list[str]
    class_names: list[str] | None
    source: str
    image_styles: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.images) or len(self.keys) != len(self.images):
            raise ValueError(f"{self.name}: labels/keys/images differ in length")
        if self.image_styles is not None and len(self.image_styles) != len(self.images):
            raise ValueError(f"{self.name}: image_styles must have one entry per image")


def grouped_captions_split(
    name: str,
    images: ImageSource,
    image_keys: list[str],
    captions_per_image: Sequence[Sequence[str]],
    source: str,
    image_styles: list[str] | None = None,
) -> CrossModalSplit:
    """A :class:`CrossModalSplit` from the captions of each image, in image order."""
    captions = [c for group in captions_per_image for c in group]
    counts = [len(group) for group in captions_per_image]
    caption_image = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return CrossModalSplit(name, images, image_keys, captions, caption_image, source, image_styles)
