"""The training loader's augmentation depends on the item's place in the epoch,
not on the worker that loads it: same batches with 0 or 2 workers, and a loader
started at batch n yields exactly the tail of the full epoch."""

from __future__ import annotations

import torch

from retrievalkit.pipeline.build import build_transform, load_splits
from retrievalkit.run.config import parse_config
from retrievalkit.training.data_loading import (
    PreparedImages,
    make_train_loader,
    prepare_train_images,
)

RAW = {
    "name": "loader",
    "task": "cross_modal",
    "data": {"name": "synthetic_shapes", "options": {"n_images": 24, "size": 16},
             "image_size": 12, "batch_size": 6, "augment": True},
    "model": {"image": {"name": "small_cnn"}, "text": {"name": "gru"}},
    "losses": [{"name": "vse"}],
}  # fmt: skip


def _epoch(workers: int, start_batch: int = 0) -> list[torch.Tensor]:
    config = parse_config({**RAW, "data": {**RAW["data"], "num_workers": workers}})
    split = load_splits(config.data)["train"]
    transform = build_transform(split.images.kind, config.data, train=True)
    loader = make_train_loader(split, config.data, transform, True, seed=3, epoch=1,
                               start_batch=start_batch)  # fmt: skip
    return [batch.images for batch in loader]


def test_augmentation_does_not_depend_on_workers_or_start():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    full = _epoch(0)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is not drawn from
    assert len(full) == 8  # the train split's 16 images x 3 captions in batches of 6
    assert all(torch.equal(a, b) for a, b in zip(full, _epoch(2), strict=True))
    tail = _epoch(2, start_batch=3)
    assert len(tail) == len(full) - 3
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail, strict=True))


def _loader_images(augment: bool, prepare: bool, limit: int = 2**30) -> list[torch.Tensor]:
    config = parse_config({**RAW, "data": {**RAW["data"], "augment": augment}})
    split = load_splits(config.data)["train"]
    transform = build_transform(split.images.kind, config.data, train=True)
    if prepare:
        split, transform = prepare_train_images(split, transform, augment, limit)
    loader = make_train_loader(split, config.data, transform, True, seed=3, epoch=1)
    return [batch.images for batch in loader]


def test_images_prepared_once_without_augmentation_give_the_same_batches():
    config = parse_config({**RAW, "data": {**RAW["data"], "augment": False}})
    split = load_splits(config.data)["train"]
    transform = build_transform(split.images.kind, config.data, train=True)
    prepared, identity = prepare_train_images(split, transform, False)
    assert isinstance(prepared.images, PreparedImages) and len(prepared.images) == 16
    assert prepared.images.images.shape == (16, 3, 12, 12)
    first = prepared.images.load(0)
    assert identity(first) is first  # the loader indexes the prepared tensors as they are
    per_item, once = _loader_images(False, False), _loader_images(False, True)
    assert len(per_item) == 8
    assert all(torch.equal(a, b) for a, b in zip(per_item, once, strict=True))


def test_images_are_not_prepared_with_augmentation_or_over_the_memory_limit():
    config = parse_config({**RAW, "data": {**RAW["data"], "augment": True}})
    split = load_splits(config.data)["train"]
    transform = build_transform(split.images.kind, config.data, train=True)
    assert prepare_train_images(split, transform, True) == (split, transform)
    tiny_limit = 16 * 3 * 12 * 12 * 4 - 1  # one byte short of the 16 images
    assert prepare_train_images(split, transform, False, tiny_limit) == (split, transform)
