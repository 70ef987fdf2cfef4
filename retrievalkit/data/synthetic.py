"""A tiny synthetic dataset made on the fly: colored shapes with captions.

For smoke tests and quick experiments (no files needed). Each image is a
``size x size`` RGB picture of one shape in one color at a seeded position;
captions say what it is ("a red circle", "red circle", "circle in red").
``synthetic_shapes`` gives cross-modal splits, ``synthetic_shape_classes``
labelled splits (label = color x shape).
"""

from __future__ import annotations

import numpy as np

from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import ArrayImageSource, CrossModalSplit, LabelledSplit

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 40, 170),
    "black": (20, 20, 20),
}
SHAPES = ("square", "circle", "triangle", "bar")


def _draw(
    shape: str, color: tuple[int, int, int], size: int, rng: np.random.Generator
) -> np.ndarray:
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    r = size // 4
    cy, cx = rng.integers(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size]
    if shape == "square":
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif shape == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif shape == "triangle":
        mask = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
    else:
        mask = (abs(yy - cy) <= r // 3) & (abs(xx - cx) <= r)
    image[mask] = color
    return image


def _items(n: int, size: int, seed: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    kinds = [(c, s) for c in COLORS for s in SHAPES]
    picks = [kinds[i % len(kinds)] for i in range(n)]
    pixels = np.stack([_draw(s, COLORS[c], size, rng) for c, s in picks])
    return pixels, picks


def _split_ranges(n: int) -> dict[str, range]:
    n_val = n_test = max(n // 6, 2)
    return {
        "train": range(0, n - n_val - n_test),
        "val": range(n - n_val - n_test, n - n_test),
        "test": range(n - n_test, n),
    }


@register_dataset("synthetic_shapes")
def load_synthetic_shapes(
    n_images: int = 96, size: int = 16, seed: int = 0
) -> dict[str, CrossModalSplit]:
    """Cross-modal splits: 3 captions per image."""
    pixels, picks = _items(n_images, size, seed)
    splits = {}
    for name, rows in _split_ranges(n_images).items():
        captions, caption_image = [], []
        for position, i in enumerate(rows):
            color, shape = picks[i]
            for text in (f"a {color} {shape}", f"{color} {shape}", f"{shape} in {color}"):
                captions.append(text)
                caption_image.append(position)
        splits[name] = CrossModalSplit(
            name=f"synthetic_shapes/{name}",
            images=ArrayImageSource(pixels[list(rows)]),
            image_keys=[f"{picks[i][0]}-{picks[i][1]}-{i}" for i in rows],
            captions=captions,
            caption_image=np.asarray(caption_image, dtype=np.int64),
            source=f"synthetic (seed {seed})",
        )
    return splits


@register_dataset("synthetic_shape_classes")
def load_synthetic_shape_classes(
    n_images: int = 192, size: int = 16, seed: int = 0
) -> dict[str, LabelledSplit]:
    """Labelled splits; the label is the (color, shape) kind."""
    pixels, picks = _items(n_images, size, seed)
    kinds = [(c, s) for c in COLORS for s in SHAPES]
    labels = np.asarray([kinds.index(p) for p in picks], dtype=np.int64)
    return {
        name: LabelledSplit(
            name=f"synthetic_shape_classes/{name}",
            images=ArrayImageSource(pixels[list(rows)]),
            labels=labels[list(rows)],
            keys=[str(i) for i in rows],
            class_names=[f"{c} {s}" for c, s in kinds],
            source=f"synthetic (seed {seed})",
        )
        for name, rows in _split_ranges(n_images).items()
    }
