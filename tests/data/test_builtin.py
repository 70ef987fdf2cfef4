"""Built-in datasets from Debian packages (skipped with a reason when not installed)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from retrievalkit.data import DataError, load_dataset
from retrievalkit.data.emoji import CLDR_ROOT, FONT_PATH, normalize_key, split_of
from retrievalkit.data.fashion_mnist import ROOT as FMNIST_ROOT
from retrievalkit.data.fashion_mnist import read_idx

needs_emoji = pytest.mark.skipif(
    not (FONT_PATH.exists() and (CLDR_ROOT / "annotations" / "en.xml").exists()),
    reason="fonts-noto-color-emoji / unicode-cldr-core not installed",
)
needs_fmnist = pytest.mark.skipif(
    not FMNIST_ROOT.exists(), reason="dataset-fashion-mnist not installed"
)


@needs_emoji
def test_emoji_splits_are_by_emoji_with_several_captions():
    splits = load_dataset("emoji", size=32, limit=300)
    keys = [set(s.image_keys) for s in splits.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    train = splits["train"]
    assert len(train.images) > 150
    assert len(train.captions) >= 2 * len(train.images)
    assert np.asarray(train.images.load(0)).shape == (32, 32, 3)
    counts = np.bincount(train.caption_image, minlength=len(train.images))
    assert counts.min() >= 1
    assert all(split_of(k) == "train" for k in train.image_keys)
    again = load_dataset("emoji", size=32, limit=300)  # from the cache
    assert again["train"].image_keys == train.image_keys
    assert np.array_equal(
        np.asarray(again["train"].images.load(5)), np.asarray(train.images.load(5))
    )


@needs_emoji
def test_emoji_captions_match_their_emoji():
    splits = load_dataset("emoji", size=32)
    for split in splits.values():
        for key, caption in (
            ("🥹", "face holding back tears"),
            ("😃", "grinning face with big eyes"),
        ):
            if key in split.image_keys:
                image = split.image_keys.index(key)
                assert caption in [
                    c
                    for c, i in zip(split.captions, split.caption_image, strict=True)
                    if i == image
                ]


def test_normalize_key_strips_variation_selector():
    assert normalize_key("❤\ufe0f") == "❤"


@needs_fmnist
def test_fashion_mnist_unseen_classes_protocol():
    splits = load_dataset("fashion-mnist", limit=2000)
    assert set(splits) == {"train", "test"}
    assert set(splits["train"].labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(splits["test"].labels.tolist()) == {5, 6, 7, 8, 9}
    assert np.asarray(splits["train"].images.load(0)).shape == (28, 28)
    standard = load_dataset("fashion_mnist", protocol="standard", limit=1200)
    assert set(standard) == {"train", "val", "test"}


def write_idx(path: Path, array: np.ndarray, magic_type: int = 0x08) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_its_errors(tmp_path):
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    write_idx(tmp_path / "x.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)
    with gzip.open(tmp_path / "bad.gz", "wb") as handle:
        handle.write(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="bad.gz: bad magic number"):
        read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(DataError, match="short.gz: size 10 bytes; expected 13 bytes"):
        read_idx(tmp_path / "short.gz")
    with pytest.raises(DataError, match="missing.gz: file not found"):
        read_idx(tmp_path / "missing.gz")
