"""Training loaders: the recipe's sampler over the training split, resumable mid-epoch.

The batch order of an epoch is a pure function of ``(seed, epoch)``; a resumed
run passes ``start_batch`` to skip the batches already trained. Under data-parallel
training each rank iterates its share of every global batch (``RankShareSampler``). The DataLoader
gets its own generator so it never draws from the global RNG (which the
checkpoint restores). The random augmentation of each item is seeded by its
place in the epoch (epoch, batch, position), not by whichever process or worker
loads it, so a run resumed mid-epoch sees the same crops and flips whatever
``num_workers`` is (SIGKILL test: ``tests/reliability/test_kill.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from retrievalkit.run.config import DataConfig


@dataclass(frozen=True)
class TrainBatch:
    """What a training step needs.

    Attributes:
        images: ``[B, C, H, W]`` images or ``[B, F]`` features.
        captions: B caption strings (cross-modal) or None (metric learning).
        ids: ``[B]`` int64: image index (cross-modal: captions of one image share it)
            or class label (metric learning).
    """

    images: Tensor
    captions: list[str] | None
    ids: Tensor

    def fields(self) -> dict[str, Any]:
        """The batch by name, as models (``images``, ``captions``) and losses (``ids``) read it."""
        return {"images": self.images, "captions": self.captions, "ids": self.ids}

    def to(self, device: torch.device) -> TrainBatch:
        return replace(
            self,
            images=self.images.to(device, non_blocking=True),
            ids=self.ids.to(device, non_blocking=True),
        )


def _collate_cross_modal(items: list[tuple[Any, ...]]) -> TrainBatch:
    from retrievalkit.data import collate_pairs

    batch = collate_pairs(items)
    return TrainBatch(images=batch.images, captions=list(batch.captions), ids=batch.image_ids)


def _collate_labelled(items: list[tuple[Any, ...]]) -> TrainBatch:
    from retrievalkit.data import collate_labelled

    batch = collate_labelled(items)
    return TrainBatch(images=batch.images, captions=None, ids=batch.labels)


PREPARE_LIMIT_BYTES = 512 * 2**20


class PreparedImages:
    """A split's images, each transformed once: ``load(i)`` gives row ``i`` of ``[N, C, H, W]``."""

    kind = "image"

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def load(self, index: int) -> Tensor:
        return self.images[index]


def _unchanged(image: Tensor) -> Tensor:
    return image


@dataclass(frozen=True)
class TowerViews:
    """What caching a frozen image tower's training inputs needs: the model, its
    evaluation transform (view 0), the views per image and whether to show progress."""

    model: torch.nn.Module
    eval_transform: Any
    views: int = 1
    progress: bool = False


def _row_tensor(row: Any) -> Tensor:
    return torch.as_tensor(row)


def prepare_train_images(
    split: Any,
    transform: Any,
    augment: bool,
    limit_bytes: int = PREPARE_LIMIT_BYTES,
    tower: TowerViews | None = None,
) -> tuple[Any, Any]:
    """``(split, transform)`` for the training loader.

    With ``tower`` whose model declares a frozen trunk, the split's images become
    their cached trunk outputs (``tower.views`` per image when ``augment``, drawn
    one per item each epoch; ``pipeline/tower_cache.py``) and the transform the
    identity, so an epoch runs only the trainable part.

    Without augmentation the transform is deterministic, so (as a plain PyTorch loop
    does) every training image is transformed once here, when all of them fit in
    ``limit_bytes``, and the loader indexes the tensors (same values, so training is
    unchanged; per-item decoding cost a Fashion-MNIST epoch about 20 %). Otherwise,
    and for feature inputs, both are returned as they are.
    """
    images = split.images
    if tower is not None:
        from retrievalkit.pipeline.tower_cache import cached_views

        cached = cached_views(
            tower.model,
            images,
            tower.eval_transform,
            transform if augment and tower.views > 1 else None,
            tower.views,
            tower.progress,
        )
        if cached is not None:
            return replace(split, images=cached), _row_tensor
    if augment or images.kind != "image" or len(images) == 0:
        return split, transform
    first = transform(images.load(0))
    if first.numel() * first.element_size() * len(images) > limit_bytes:
        return split, transform
    rest = (transform(images.load(i)) for i in range(1, len(images)))
    prepared = PreparedImages(torch.stack([first, *rest]))
    return replace(split, images=prepared), _unchanged


class _SeededItems(Dataset):
    """``dataset[index]`` with the CPU generator seeded by ``item_seed``, for keys
    ``(item_seed, index)``; the caller's RNG state is left as it was.

    Only the CPU generator is seeded (item transforms run on the CPU):
    ``torch.manual_seed`` would also queue a lazy CUDA seeding, which records
    the Python stack on every call and cost 40 % of a Fashion-MNIST epoch on a
    CPU machine (benchmarks/trainer_overhead.py)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        item_seed, index = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(item_seed)
            return self.dataset[index]


class _SeededBatches:
    """Batches of ``sampler`` as ``(item_seed, index)`` keys, the seed a function of
    ``(base, batch number in the epoch, position in the batch)``."""

    def __init__(self, sampler: Any, base: int) -> None:
        self.sampler = sampler
        self.base = base

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Any:
        for number, batch in enumerate(self.sampler, start=self.sampler.start_batch):
            first = (self.base * 1_000_003 + number) * 4096
            yield [((first + position) % 2**63, index) for position, index in enumerate(batch)]


def make_batch_sampler(split: Any, data: DataConfig, cross_modal: bool, seed: int) -> Any:
    """The recipe's batch sampler (seeded; ``set_epoch``; ``start_batch``) over
    image-caption pairs (``cross_modal``) or labelled images."""
    from retrievalkit.data import CrossModalBatchSampler, PKBatchSampler, RandomBatchSampler

    if cross_modal:
        if data.sampler == "pk":
            raise ValueError("sampler 'pk' is for metric learning; use 'unique_images'")
        return CrossModalBatchSampler(
            split.caption_groups,  # images sharing a key (emoji styles) share captions
            batch_size=data.batch_size,
            seed=seed,
            allow_same_image=data.sampler == "random",
        )
    if data.sampler == "pk":
        return PKBatchSampler(
            split.labels,
            classes_per_batch=data.batch_size // data.samples_per_class,
            samples_per_class=data.samples_per_class,
            seed=seed,
        )
    return RandomBatchSampler(len(split.labels), batch_size=data.batch_size, seed=seed)


def make_train_loader(
    split: Any,
    data: DataConfig,
    transform: Any,
    cross_modal: bool,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over one epoch of ``split`` starting at batch ``start_batch``:
    image-caption pairs when ``cross_modal`` (the model takes captions), else
    labelled images; with ``world_size > 1``, rank ``rank``'s share of each batch."""
    from retrievalkit.data import CaptionPairDataset, LabelledImageDataset, RankShareSampler

    sampler = make_batch_sampler(split, data, cross_modal, seed)
    if world_size > 1:
        sampler = RankShareSampler(sampler, rank, world_size)
    sampler.set_epoch(epoch)
    sampler.start_batch = start_batch
    if cross_modal:
        dataset, collate = CaptionPairDataset(split, transform), _collate_cross_modal
    else:
        dataset, collate = LabelledImageDataset(split, transform), _collate_labelled
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch + 1_000_000_007 * rank)
    return DataLoader(
        _SeededItems(dataset),
        batch_sampler=_SeededBatches(sampler, seed * 100_003 + epoch),
        collate_fn=collate,
        num_workers=data.num_workers,
        generator=generator,
        persistent_workers=False,
    )
