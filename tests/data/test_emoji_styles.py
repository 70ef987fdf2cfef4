"""Emoji art styles: Iconify sets, rendering, the multi-style splits and the identity view.

Unit tests use tiny icons.json/chars.json written here; one test reads the real npm
sets when `make data-packages` has fetched them (skipped with the reason otherwise).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from retrievalkit.data import DataError, load_dataset
from retrievalkit.data.emoji.dataset import (
    EmojiImages,
    choose_styles,
    emoji_id_splits,
    emoji_splits,
    view_style,
)
from retrievalkit.data.emoji.noto import CLDR_ROOT, FONT_PATH, split_of
from retrievalkit.data.emoji.styles import (
    STYLES,
    chars_to_key,
    default_styles_dir,
    read_icon_set,
    render_icons,
    style_directory,
)
from retrievalkit.data.overview import save_style_grid, style_counts, style_summary
from retrievalkit.data.samplers import CrossModalBatchSampler

pytest.importorskip("cairosvg")
needs_cldr = pytest.mark.skipif(
    not (CLDR_ROOT / "annotations" / "en.xml").exists(), reason="unicode-cldr-core not installed"
)
HALVES = (  # left half red, right half blue: a horizontal flip swaps them
    '<rect x="0" y="0" width="5" height="10" fill="#ff0000"/>'
    '<rect x="5" y="0" width="5" height="10" fill="#0000ff"/>'
)


def write_icon_set(directory: Path, chars: dict[str, str], version: str = "9.9.9") -> Path:
    """A tiny Iconify set: icon 'halves', alias 'flipped' (hFlip) and 'small' (a dot)."""
    directory.mkdir(parents=True, exist_ok=True)
    icons = {
        "prefix": "test",
        "width": 10,
        "height": 10,
        "icons": {
            "halves": {"body": HALVES},
            "small": {"body": '<circle cx="2" cy="2" r="1" fill="#00ff00"/>', "width": 4},
        },
        "aliases": {"flipped": {"parent": "halves", "hFlip": True}, "again": {"parent": "flipped"}},
    }
    (directory / "icons.json").write_text(json.dumps(icons))
    (directory / "chars.json").write_text(json.dumps(chars))
    (directory / "VERSION").write_text(version + "\n")
    return directory


def test_chars_keys_drop_fe0f():
    assert chars_to_key("2764-fe0f") == "❤"
    assert chars_to_key("1f469-200d-1f4bb") == "👩\u200d💻"


def test_icon_set_resolves_aliases_and_renders_flips(tmp_path):
    icons = read_icon_set(
        write_icon_set(tmp_path, {"1f600": "halves", "2764-fe0f": "again", "1f436": "small"})
    )
    assert sorted(icons) == sorted(["😀", "❤", "🐶"])
    pixels, ok = render_icons([icons["😀"], icons["❤"], None, icons["🐶"]], 16)
    assert ok.tolist() == [True, True, False, True]
    assert pixels.shape == (4, 16, 16, 3) and pixels.dtype == np.uint8
    left, right = pixels[:, 8, 2], pixels[:, 8, 13]
    assert left[0].tolist() == [255, 0, 0] and right[0].tolist() == [0, 0, 255]
    assert left[1].tolist() == [0, 0, 255] and right[1].tolist() == [255, 0, 0]  # hFlip
    assert (pixels[2] == 255).all()  # no icon: white
    assert pixels[3, 8, 8].tolist() == [0, 255, 0]  # a small dot is cropped and scaled up


def test_broken_icon_set_is_named(tmp_path):
    directory = write_icon_set(tmp_path / "set", {"1f600": "missing-icon"})
    with pytest.raises(DataError, match="icons.json: icon 'missing-icon' has no body"):
        read_icon_set(directory)
    (directory / "chars.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="chars.json: a JSON list"):
        read_icon_set(directory)
    with pytest.raises(DataError, match="nowhere/icons.json: file not found"):
        read_icon_set(tmp_path / "nowhere")


def test_missing_styles_are_skipped_or_refused(tmp_path, caplog):
    write_icon_set(style_directory(STYLES["twemoji"], tmp_path), {"1f600": "halves"})
    with caplog.at_level(logging.WARNING):
        chosen = choose_styles(None, tmp_path)
    expected = ["noto", "twemoji"] if FONT_PATH.exists() else ["twemoji"]
    assert chosen == expected
    assert "emoji style skipped: openmoji:" in caplog.text and "make data-packages" in caplog.text
    with pytest.raises(DataError, match="style fluent: .* not found"):
        choose_styles(["twemoji", "fluent"], tmp_path)
    with pytest.raises(DataError, match="unknown style 'comic'"):
        choose_styles(["comic"], tmp_path)


def keys_by_split(per_split: int) -> list[str]:
    """Short strings whose ``split_of`` gives ``per_split`` of each of train/val/test."""
    found: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    i = 0
    while min(len(v) for v in found.values()) < per_split:
        key = f"e{i}"
        if len(found[split_of(key)]) < per_split:
            found[split_of(key)].append(key)
        i += 1
    return [k for part in found.values() for k in part]


def synthetic_images(styles=("noto", "twemoji", "openmoji"), per_split: int = 4) -> EmojiImages:
    """Emoji e* in every style but the last emoji of each split, which lacks the last style;
    pixel value = 10 * emoji + style index (to check which image landed where)."""
    keys = keys_by_split(per_split)
    emoji, style, pixels = [], [], []
    for e in range(len(keys)):
        last_of_split = (e + 1) % per_split == 0
        for s, name in enumerate(styles):
            if last_of_split and s == len(styles) - 1:
                continue
            emoji.append(e)
            style.append(name)
            pixels.append(np.full((4, 4, 3), 10 * e + s, np.uint8))
    return EmojiImages(
        keys=keys,
        captions=[[f"name {k}", f"word {k}"] for k in keys],
        pixels=np.stack(pixels),
        emoji=np.asarray(emoji, np.int64),
        style=style,
        styles=list(styles),
        source="synthetic",
    )


def test_splits_by_emoji_with_all_styles_and_single_views():
    data = synthetic_images()
    splits = emoji_splits(data)
    assert set(splits) == {"train", "val", "test"} | {
        f"{p}_{s}" for p in ("val", "test") for s in data.styles
    }
    train = splits["train"]
    assert len(train.images) == 4 * 3 - 1 and set(train.image_styles) == set(data.styles)
    assert all(split_of(k) == "train" for k in train.image_keys)
    for split in splits.values():  # every image carries its emoji's captions, and its style
        for i, key in enumerate(split.image_keys):
            mine = [c for c, j in zip(split.captions, split.caption_image, strict=True) if j == i]
            assert mine == [f"name {key}", f"word {key}"]
            value = int(np.asarray(split.images.load(i))[0, 0, 0])
            assert data.keys[value // 10] == key
            assert data.styles[value % 10] == split.image_styles[i]
    test = splits["test"]  # one image per emoji, in the hash-picked style it has
    assert sorted(test.image_keys) == sorted(k for k in data.keys if split_of(k) == "test")
    for key, style in zip(test.image_keys, test.image_styles, strict=True):
        have = [s for s in data.styles if (key, s) in set(zip(*_pairs(data), strict=True))]
        assert style == view_style(key, have)
    assert len(splits["test_openmoji"].images) == 3 and len(splits["test_noto"].images) == 4
    # training batches never hold two images (styles) of one emoji
    sampler = CrossModalBatchSampler(train.caption_groups, batch_size=4, seed=0)
    for batch in sampler:
        keys = [train.image_keys[train.caption_image[c]] for c in batch]
        assert len(set(keys)) == len(keys)


def _pairs(data: EmojiImages) -> tuple[list[str], list[str]]:
    return [data.keys[e] for e in data.emoji], list(data.style)


def test_one_style_gives_the_plain_splits():
    data = synthetic_images(styles=("noto",))
    splits = emoji_splits(data)
    assert set(splits) == {"train", "val", "test"}
    assert splits["test"].image_styles == ["noto"] * 3  # the split's last emoji has no image
    assert np.array_equal(splits["train"].caption_groups, splits["train"].caption_image)


def test_held_out_style_protocol():
    data = synthetic_images()
    splits = emoji_splits(data, held_out_style="openmoji")
    assert "openmoji" not in splits["train"].image_styles
    assert "openmoji" not in splits["val"].image_styles
    assert set(splits["test"].image_styles) == {"openmoji"}
    assert sorted(splits["test"].image_keys) == sorted(splits["test_openmoji"].image_keys)
    assert set(splits["test_noto"].image_keys) >= set(splits["test"].image_keys)
    with pytest.raises(DataError, match="held_out_style='fluent'.*not a loaded style"):
        emoji_splits(data, held_out_style="fluent")
    with pytest.raises(DataError, match="no other style to train on"):
        emoji_splits(synthetic_images(styles=("noto",)), held_out_style="noto")


def test_identity_view_has_classes_of_two_or_more_styles():
    data = synthetic_images(styles=("noto", "twemoji"))  # the last emoji of each split: 1 style
    splits = emoji_id_splits(data)
    for name, split in splits.items():
        labels, counts = np.unique(split.labels, return_counts=True)
        assert (counts == 2).all() and len(labels) == 3, name
        assert all(split_of(data.keys[label]) == name for label in labels)
        assert [data.keys[label] for label in split.labels] == split.keys
    assert not set(splits["train"].labels) & set(splits["test"].labels)


def test_style_counts_summary_and_grid(tmp_path):
    data = synthetic_images()
    splits = emoji_splits(data)
    counts = style_counts(splits)
    assert counts == {
        "images_per_style": {"noto": 12, "twemoji": 12, "openmoji": 9},
        "keys_with_n_styles": {1: 0, 2: 3, 3: 9},
    }
    text = style_summary(splits)
    assert "images per style: noto 12, twemoji 12, openmoji 9" in text
    assert "emoji drawn in n styles: 1: 0, 2: 3, 3: 9" in text
    assert "style openmoji: CC BY-SA 4.0" in text and "style twemoji: CC BY 4.0" in text
    keys = save_style_grid(splits["train"], tmp_path / "grid.png", n=6, seed=1)
    assert len(keys) == 2 and (tmp_path / "grid.png").stat().st_size > 1000


@needs_cldr
def test_emoji_dataset_from_tiny_icon_sets(tmp_path):
    chars = {"1f600": "halves", "2764-fe0f": "again", "1f436": "small", "1f431": "halves"}
    write_icon_set(style_directory(STYLES["twemoji"], tmp_path / "sets"), chars)
    write_icon_set(style_directory(STYLES["openmoji"], tmp_path / "sets"), {"1f600": "small"})
    options = {"size": 16, "styles_dir": tmp_path / "sets", "cache_dir": tmp_path / "cache"}
    splits = load_dataset("emoji", styles=["twemoji", "openmoji"], **options)
    every = {
        (k, s)
        for split in splits.values()
        for k, s in zip(split.image_keys, split.image_styles, strict=True)
    }
    assert every == {("😀", "twemoji"), ("❤", "twemoji"), ("🐶", "twemoji"), ("🐱", "twemoji"),
                     ("😀", "openmoji")}  # fmt: skip
    assert list((tmp_path / "cache").glob("emoji-twemoji-16px-*.npz"))  # rendered once, cached
    again = load_dataset("emoji", styles=["twemoji", "openmoji"], **options)
    assert again["train"].image_keys == splits["train"].image_keys
    ident = load_dataset("emoji_id", styles=["twemoji", "openmoji"], **options)
    assert sum(len(s.labels) for s in ident.values()) == 2  # only 😀 has two styles


def test_real_icon_sets_when_fetched():
    directory = default_styles_dir()
    missing = [
        s.name
        for s in STYLES.values()
        if s.is_svg and not (style_directory(s, directory) / "icons.json").exists()
    ]
    if missing:
        pytest.skip(f"npm sets {missing} not in {directory} (run `make data-packages`)")
    for style in STYLES.values():
        if not style.is_svg:
            continue
        folder = style_directory(style, directory)
        assert (folder / "VERSION").read_text().strip() == style.version
        icons = read_icon_set(folder)
        assert len(icons) > 3000, style.name
        pixels, ok = render_icons([icons["😀"], icons["❤"]], 32)
        assert ok.all() and pixels.std() > 20
        info = json.loads((folder / "info.json").read_text())
        assert info["license"]["title"] == style.licence


@needs_cldr
def test_data_info_and_show_on_tiny_icon_sets(tmp_path, capsys):
    from retrievalkit.cli import main

    chars = {"1f600": "halves", "2764-fe0f": "again", "1f436": "small", "1f431": "halves"}
    for style in ("twemoji", "openmoji"):
        write_icon_set(style_directory(STYLES[style], tmp_path / "sets"), chars)
    options = ["--set", "styles=[twemoji, openmoji]", "--set", f"styles_dir={tmp_path / 'sets'}"]
    options += ["--set", f"cache_dir={tmp_path / 'cache'}", "--set", "size=16"]
    assert main(["data", "info", "emoji", *options]) == 0
    out = capsys.readouterr().out
    assert "images per style: twemoji 4, openmoji 4" in out
    assert "emoji drawn in n styles: 1: 0, 2: 4" in out
    assert "style openmoji: CC BY-SA 4.0; OpenMoji" in out
    picture = tmp_path / "styles.png"
    assert main(["data", "show", "emoji", *options, "--split", "train", "--out", str(picture)]) == 0
    assert "one column per style" in capsys.readouterr().out and picture.stat().st_size > 1000
