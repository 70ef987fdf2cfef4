"""Karpathy split JSON: splits, restval, asserted counts, bad input named by file and item."""

import json

import numpy as np
import pytest

from retrievalkit.data import DataError, load_dataset
from retrievalkit.data.karpathy import STANDARD_COUNTS


def karpathy_json(tmp_path, image_writer, coco=True):
    """6 images: 2 train, 1 restval, 1 val, 2 test; 5, 5, 3, 2, 1, 2 captions."""
    splits = ["train", "train", "restval" if coco else "train", "val", "test", "test"]
    n_caps = [5, 5, 3, 2, 1, 2]
    images = []
    for i, (split, n) in enumerate(zip(splits, n_caps)):
        folder = "val2014" if split != "train" else "train2014"
        record = {
            "filename": f"img{i}.jpg",
            "split": split,
            "imgid": i,
            "sentences": [{"raw": f"image {i} caption {j}", "tokens": []} for j in range(n)],
        }
        if coco:
            record.update(filepath=folder, cocoid=1000 + i)
            image_writer(tmp_path / "images" / folder / f"img{i}.jpg", i)
        else:
            image_writer(tmp_path / "images" / f"img{i}.jpg", i)
        images.append(record)
    name = "dataset_coco.json" if coco else "dataset_flickr30k.json"
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "dataset": "coco"}, indent=1))
    return path, images


def test_coco_json_loads_with_restval_by_default(tmp_path, image_writer):
    path, _ = karpathy_json(tmp_path, image_writer)
    splits = load_dataset("karpathy", json_path=path, image_root=tmp_path / "images")
    train = splits["train"]
    assert train.image_keys == ["train2014/img0.jpg", "train2014/img1.jpg", "val2014/img2.jpg"]
    assert train.captions[5] == "image 1 caption 0"
    assert train.caption_image.tolist() == [0] * 5 + [1] * 5 + [2] * 3
    assert train.caption_image.dtype == np.int64
    assert len(splits["val"].images) == 1 and len(splits["test"].captions) == 3
    assert splits["test"].caption_image.tolist() == [0, 1, 1]
    image = splits["test"].images.load(1)
    assert image.mode == "RGB" and image.size == (12, 10)
    no_restval = load_dataset(
        "karpathy", json_path=path, image_root=tmp_path / "images", restval=False
    )
    assert len(no_restval["train"].images) == 2


def test_flickr_json_has_no_filepath(tmp_path, image_writer):
    path, _ = karpathy_json(tmp_path, image_writer, coco=False)
    splits = load_dataset("karpathy", json_path=path, image_root=tmp_path / "images")
    assert splits["train"].image_keys == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert splits["train"].name == "flickr30k/train"


def test_expected_counts_name_the_file_and_the_difference(tmp_path, image_writer):
    path, _ = karpathy_json(tmp_path, image_writer)
    with pytest.raises(DataError, match=r"dataset_coco.json: not the standard coco split") as err:
        load_dataset(
            "karpathy", json_path=path, image_root=tmp_path / "images", expected_counts=True
        )
    assert "train has 3 images, expected 113287" in str(err.value)
    ok = {"train": 3, "val": 1, "test": 2}
    load_dataset("karpathy", json_path=path, image_root=tmp_path / "images", expected_counts=ok)
    assert STANDARD_COUNTS["coco_no_restval"]["train"] == 82_783
    assert STANDARD_COUNTS["flickr30k"] == {"train": 29_000, "val": 1_014, "test": 1_000}


def coco_sized_json(tmp_path, per_split):
    images = [
        {"filepath": "x", "filename": f"{s}{i}.jpg", "split": s, "sentences": [{"raw": "a"}]}
        for s, n in per_split.items()
        for i in range(n)
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images}))
    return path


def test_standard_counts_are_checked_per_restval(tmp_path, monkeypatch):
    # the real sizes scaled down 1000x, so the check's logic runs in milliseconds
    small = {k: {s: n // 1000 for s, n in v.items()} for k, v in STANDARD_COUNTS.items()}
    monkeypatch.setattr("retrievalkit.data.karpathy.STANDARD_COUNTS", small)
    path = coco_sized_json(tmp_path, {"train": 82, "restval": 31, "val": 5, "test": 5})
    options = dict(json_path=path, image_root=tmp_path, expected_counts=True, check_files=False)
    assert len(load_dataset("karpathy", **options)["train"].images) == 113
    assert len(load_dataset("karpathy", restval=False, **options)["train"].images) == 82
    path = coco_sized_json(tmp_path, {"train": 82, "restval": 31, "val": 5, "test": 4})
    with pytest.raises(DataError, match="test has 4 images, expected 5"):
        load_dataset("karpathy", **options)


@pytest.mark.slow
def test_standard_coco_counts_pass_on_a_full_size_file(tmp_path):
    per_split = {"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000}
    path = coco_sized_json(tmp_path, per_split)
    options = dict(json_path=path, image_root=tmp_path, expected_counts=True, check_files=False)
    assert len(load_dataset("karpathy", **options)["train"].images) == 113_287


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "dataset_coco.json"
    path.write_text('{"images": [\n  {"filename": "a.jpg",\n  "split": train}\n]}')
    with pytest.raises(DataError, match=r"dataset_coco.json:line 3:\d+: malformed JSON"):
        load_dataset("karpathy", json_path=path, image_root=tmp_path)


def test_missing_image_empty_caption_and_escape_are_named(tmp_path, image_writer):
    path, images = karpathy_json(tmp_path, image_writer)
    root = tmp_path / "images"
    (root / "val2014" / "img3.jpg").unlink()
    with pytest.raises(DataError, match=r"dataset_coco.json:images\[3\]: image file .*missing"):
        load_dataset("karpathy", json_path=path, image_root=root)
    skipped = load_dataset("karpathy", json_path=path, image_root=root, on_error="skip")
    assert len(skipped["val"].images) == 0 and len(skipped["train"].images) == 3

    images[4]["sentences"][0]["raw"] = "  "
    images[3]["filename"] = "../../secret.jpg"
    path.write_text(json.dumps({"images": images}))
    with pytest.raises(DataError, match=r"images\[3\]: image path '.*secret.jpg' leaves the root"):
        load_dataset("karpathy", json_path=path, image_root=root)
    images[3]["filename"] = "img3.jpg"
    image_writer(root / "val2014" / "img3.jpg", 3)
    path.write_text(json.dumps({"images": images}))
    with pytest.raises(DataError, match=r"images\[4\]\.sentences\[0\]: empty caption"):
        load_dataset("karpathy", json_path=path, image_root=root)


def test_corrupt_image_is_named_at_load_or_with_verify(tmp_path, image_writer):
    path, _ = karpathy_json(tmp_path, image_writer)
    root = tmp_path / "images"
    (root / "val2014" / "img4.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    splits = load_dataset("karpathy", json_path=path, image_root=root)
    with pytest.raises(DataError, match=r"img4.jpg:item 0: not a readable image"):
        splits["test"].images.load(0)
    with pytest.raises(DataError, match=r"images\[4\]: image file .*img4.jpg is not readable"):
        load_dataset("karpathy", json_path=path, image_root=root, verify_images=True)
