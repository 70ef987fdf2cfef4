"""torch Datasets and collate functions over splits, with the samplers in a DataLoader."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from retrievalkit.data import (
    ArrayImageSource,
    CaptionDataset,
    CaptionPairDataset,
    CrossModalBatch,
    CrossModalBatchSampler,
    CrossModalSplit,
    FeatureSource,
    ImageDataset,
    LabelledBatch,
    LabelledImageDataset,
    LabelledSplit,
    PKBatchSampler,
    collate_labelled,
    collate_pairs,
)
from retrievalkit.data.transforms import build_transform


def toy_split():
    pixels = np.stack([np.full((6, 6, 3), 40 * i, dtype=np.uint8) for i in range(5)])
    caption_image = np.array([0, 0, 1, 2, 2, 2, 3, 4], dtype=np.int64)
    return CrossModalSplit(
        "toy/train",
        ArrayImageSource(pixels),
        [f"k{i}" for i in range(5)],
        [f"caption {m} of image {i}" for m, i in enumerate(caption_image)],
        caption_image,
        "test",
    )


def test_caption_pairs_through_a_dataloader():
    split = toy_split()
    dataset = CaptionPairDataset(split, build_transform("image", 4, train=False))
    image, caption, image_index, caption_index = dataset[4]
    assert image.shape == (3, 4, 4) and caption == "caption 4 of image 2"
    assert (image_index, caption_index) == (2, 4)
    sampler = CrossModalBatchSampler(split.caption_image, batch_size=3, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_pairs)
    seen = []
    for batch in loader:
        assert isinstance(batch, CrossModalBatch)
        assert batch.images.shape[1:] == (3, 4, 4) and batch.image_ids.dtype == torch.int64
        assert batch.image_ids.tolist() == split.caption_image[batch.caption_ids.numpy()].tolist()
        assert len(set(batch.image_ids.tolist())) == len(batch.captions)
        assert all(f"image {i}" in c for c, i in zip(batch.captions, batch.image_ids.tolist()))
        seen += batch.caption_ids.tolist()
    assert len(seen) == len(set(seen))


def test_labelled_images_and_features():
    split = LabelledSplit(
        "toy/test",
        FeatureSource(np.arange(24, dtype=np.float32).reshape(8, 3)),
        np.array([0, 0, 1, 1, 2, 2, 3, 3]),
        [str(i) for i in range(8)],
        None,
        "test",
    )
    dataset = LabelledImageDataset(split, build_transform("feature", 0, train=False))
    sampler = PKBatchSampler(split.labels, classes_per_batch=2, samples_per_class=2, seed=0)
    batches = list(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_labelled))
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, LabelledBatch) and batch.images.shape == (4, 3)
        assert torch.equal(batch.images[:, 0], batch.indices.float() * 3)
        assert batch.labels.tolist() == (batch.indices // 2).tolist()
    image, index = ImageDataset(split.images, torch.as_tensor)[5]
    assert index == 5 and image.tolist() == [15.0, 16.0, 17.0]
    assert CaptionDataset(["a", "b"])[1] == ("b", 1) and len(CaptionDataset(["a"])) == 1


def test_splits_check_their_own_consistency():
    pixels = ArrayImageSource(np.zeros((2, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="caption_image points outside the 2 images"):
        CrossModalSplit("bad", pixels, ["a", "b"], ["x"], np.array([2]), "test")
    with pytest.raises(ValueError, match="1 keys for 2 images"):
        CrossModalSplit("bad", pixels, ["a"], ["x"], np.array([0]), "test")
    with pytest.raises(ValueError, match="labels/keys/images differ"):
        LabelledSplit("bad", pixels, np.array([0]), ["a", "b"], None, "test")
    with pytest.raises(ValueError, match=r"expected uint8 \[N, H, W\(, 3\)\]"):
        ArrayImageSource(np.zeros((2, 4, 4, 3), dtype=np.float32))
