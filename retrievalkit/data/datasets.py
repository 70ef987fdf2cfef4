"""torch Datasets over splits, and the batches their collate functions build."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from retrievalkit.data.splits import CrossModalSplit, ImageSource, LabelledSplit

Transform = Callable[[Any], Tensor]


@dataclass(frozen=True)
class CrossModalBatch:
    """``images [B, C, H, W]`` (or ``[B, F]``), B captions, ``image_ids [B]``,
    ``caption_ids [B]`` (indices into the split)."""

    images: Tensor
    captions: list[str]
    image_ids: Tensor
    caption_ids: Tensor


@dataclass(frozen=True)
class LabelledBatch:
    """``images [B, ...]``, ``labels [B]``, ``indices [B]`` into the split."""

    images: Tensor
    labels: Tensor
    indices: Tensor


class CaptionPairDataset(Dataset):
    """One item per caption: ``(image tensor, caption, image index, caption index)``."""

    def __init__(self, split: CrossModalSplit, transform: Transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, index: int) -> tuple[Tensor, str, int, int]:
        image_index = int(self.split.caption_image[index])
        image = self.transform(self.split.images.load(image_index))
        return image, self.split.captions[index], image_index, index


class ImageDataset(Dataset):
    """Items of an image source: ``(tensor, index)``."""

    def __init__(self, source: ImageSource, transform: Transform) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.source.load(index)), index


class LabelledImageDataset(Dataset):
    """Items of a labelled split: ``(tensor, label, index)``."""

    def __init__(self, split: LabelledSplit, transform: Transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self.transform(self.split.images.load(index))
        return image, int(self.split.labels[index]), index


class CaptionDataset(Dataset):
    """Captions alone: ``(caption, index)``."""

    def __init__(self, captions: Sequence[str]) -> None:
        self.captions = list(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.captions[index], index


def collate_pairs(items: Sequence[tuple[Tensor, str, int, int]]) -> CrossModalBatch:
    images, captions, image_ids, caption_ids = zip(*items, strict=True)
    return CrossModalBatch(
        images=torch.stack(images),
        captions=list(captions),
        image_ids=torch.as_tensor(np.asarray(image_ids), dtype=torch.long),
        caption_ids=torch.as_tensor(np.asarray(caption_ids), dtype=torch.long),
    )


def collate_labelled(items: Sequence[tuple[Tensor, int, int]]) -> LabelledBatch:
    images, labels, indices = zip(*items, strict=True)
    return LabelledBatch(
        images=torch.stack(images),
        labels=torch.as_tensor(labels, dtype=torch.long),
        indices=torch.as_tensor(indices, dtype=torch.long),
    )
