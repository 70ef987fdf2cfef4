"""Built-in datasets from Debian packages (skipped with a reason when not installed)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from retrievalkit.data import DataError, load_dataset
from retrievalkit.data.emoji.noto import (
    CLDR_ROOT,
    FONT_PATH,
    captions_for,
    is_candidate,
    normalize_key,
    read_annotations,
    render,
    split_of,
)
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
    splits = load_dataset("emoji", styles="noto", size=32, limit=300)
    keys = [set(s.image_keys) for s in splits.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    train = splits["train"]
    assert len(train.images) > 150
    assert len(train.captions) >= 2 * len(train.images)
    assert np.asarray(train.images.load(0)).shape == (32, 32, 3)
    counts = np.bincount(train.caption_image, minlength=len(train.images))
    assert counts.min() >= 1
    assert all(split_of(k) == "train" for k in train.image_keys)
    again = load_dataset("emoji", styles="noto", size=32, limit=300)  # deterministic
    assert again["train"].image_keys == train.image_keys
    assert np.array_equal(
        np.asarray(again["train"].images.load(5)), np.asarray(train.images.load(5))
    )


@needs_emoji
def test_render_skips_what_the_font_lacks():
    keys = ["😀", "\u203d", "→", "🐶\u200d🍕", "©", "👋🏽"]  # ‽ and → are not in the font
    pixels, ok = render(keys, 16)
    assert ok == [True, False, False, False, True, True]  # dog+pizza is no single glyph
    assert pixels.shape == (6, 16, 16, 3) and pixels.dtype == np.uint8
    assert (pixels[1] == 255).all() and pixels[0].std() > 20


def test_candidates_and_split_handle_skin_tones_and_fe0f():
    assert not is_candidate("🏽", skin_tones=True)  # a bare modifier is a color swatch
    assert is_candidate("👋🏽", skin_tones=True) and not is_candidate("👋🏽", skin_tones=False)
    assert split_of("👋🏽") == split_of("👋") == split_of("👋🏿")  # variants stay together
    assert normalize_key("☺\ufe0f") == normalize_key("☺") == "☺"


@needs_emoji
def test_emoji_limit_renders_only_a_prefix(tmp_path):
    splits = load_dataset("emoji", styles="noto", size=16, limit=40, cache_dir=tmp_path)
    total = sum(len(s.images) for s in splits.values())
    assert total == 40
    assert not list(tmp_path.glob("*.npz"))  # a limited render is not cached
    assert "rendered" in splits["train"].source and "en.xml" in splits["train"].source
    german = load_dataset("emoji", styles="noto", size=16, limit=40, cache_dir=tmp_path, lang="de")
    assert (
        german["train"].image_keys == splits["train"].image_keys[: len(german["train"].image_keys)]
    )
    assert german["train"].captions != splits["train"].captions


@needs_emoji
def test_emoji_captions_and_images_match_their_emoji(tmp_path):
    splits = load_dataset("emoji", styles="noto", size=24, limit=120, cache_dir=tmp_path)
    annotations = {a.key: a for a in read_annotations("en")}
    assert captions_for(annotations["😃"])[0] == "grinning face with big eyes"
    for split in splits.values():
        for index, key in enumerate(split.image_keys):
            mine = [
                c for c, i in zip(split.captions, split.caption_image, strict=True) if i == index
            ]
            assert mine == captions_for(annotations[key])
            assert mine[0] == annotations[key].name
        for index in (0, len(split.image_keys) - 1):
            pixels, ok = render([split.image_keys[index]], 24)
            assert ok == [True]
            assert np.array_equal(np.asarray(split.images.load(index)), pixels[0])


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


def test_fashion_mnist_protocols_on_small_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train_y, test_y = np.arange(24) % 10, np.arange(12) % 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (24, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (12, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_y)
    unseen = load_dataset("fashion_mnist", root=tmp_path)
    assert unseen["train"].keys == [f"train:{i}" for i in range(24) if train_y[i] < 5]
    assert unseen["test"].labels.tolist() == [5, 6, 7, 8, 9]
    standard = load_dataset("fashion_mnist", root=tmp_path, protocol="standard")
    assert [len(standard[s].labels) for s in ("train", "val", "test")] == [22, 2, 12]
    assert standard["val"].keys == ["train:22", "train:23"]
    carved = load_dataset("fashion_mnist", root=tmp_path, val_classes=2)
    assert set(carved["train"].labels.tolist()) == {0, 1, 2}
    assert set(carved["val"].labels.tolist()) == {3, 4}  # class-disjoint, from the train file
    assert carved["val"].keys == [f"train:{i}" for i in range(24) if train_y[i] in (3, 4)]
    assert carved["test"].labels.tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="val_classes must be 0..3"):
        load_dataset("fashion_mnist", root=tmp_path, val_classes=4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_y[:11])
    with pytest.raises(
        DataError, match=r"t10k-\*-ubyte.gz: images \(12, 28, 28\) and labels \(11,\)"
    ):
        load_dataset("fashion_mnist", root=tmp_path)
