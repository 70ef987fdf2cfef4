"""The items an index holds: every distinct (image, style) over some splits, with its metadata.

Shared by ``index build`` and the sharded ``embed`` so that both index the same
items with the same keys and metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def every_image_splits(split_names: Sequence[str]) -> list[str]:
    """Splits that together hold every image once: train plus the per-style views
    of val and test (``val_<style>``, ``test_<style>``) when there are several
    styles, else train, val, test (those present)."""
    styled = [n for n in split_names if n.startswith(("val_", "test_"))]
    if styled:
        return ["train", *styled]
    return [n for n in ("train", "val", "test") if n in split_names]


def unique_images(splits: list[Any]) -> tuple[list[tuple[Any, int]], list[str], list[dict]]:
    """``(split, index)`` of every distinct ``(key, style)`` over ``splits`` (first
    seen wins), the keys, and each one's metadata (split, style when the split has
    styles, up to 5 captions, label and class name)."""
    seen: dict[tuple[str, str | None], int] = {}
    items: list[tuple[Any, int]] = []
    metadata: list[dict[str, Any]] = []
    for split in splits:
        keys = split.image_keys if hasattr(split, "image_keys") else split.keys
        styles = getattr(split, "image_styles", None) or [None] * len(keys)
        captions_of: dict[int, list[str]] = {}
        if hasattr(split, "captions"):
            for caption, image in zip(split.captions, split.caption_image, strict=True):
                captions_of.setdefault(int(image), []).append(caption)
        for index, (key, style) in enumerate(zip(keys, styles, strict=True)):
            if (key, style) in seen:
                continue
            seen[(key, style)] = len(items)
            items.append((split, index))
            meta: dict[str, Any] = {"split": split.name}
            if style is not None:
                meta["style"] = style
            if captions_of:
                meta["captions"] = captions_of.get(index, [])[:5]
            if hasattr(split, "labels"):
                label = int(split.labels[index])
                meta["label"] = label
                if split.class_names:
                    meta["class_name"] = split.class_names[label]
            metadata.append(meta)
    return items, [key for key, _ in seen], metadata


class ListSource:
    """An ImageSource over (split, index) pairs of several splits."""

    def __init__(self, items: list[tuple[Any, int]]) -> None:
        self.items = items
        self.kind = items[0][0].images.kind if items else "image"

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Any:
        split, inner = self.items[index]
        return split.images.load(inner)
