"""vsepp precomputed features and generic pairs files: loading and named errors."""

import json

import numpy as np
import pytest

from retrievalkit.data import DataError, load_dataset


def write_precomp(folder, split, n_images, per_image=5, per_caption_rows=False, dim=4):
    folder.mkdir(parents=True, exist_ok=True)
    rows = n_images * per_image if per_caption_rows else n_images
    features = np.arange(rows * dim, dtype=np.float32).reshape(rows, dim)
    np.save(folder / f"{split}_ims.npy", features)
    lines = [f"image {i // per_image} caption {i % per_image}" for i in range(n_images * per_image)]
    (folder / f"{split}_caps.txt").write_text("\n".join(lines) + "\n")
    return features


def test_precomp_one_row_per_image_is_memory_mapped(tmp_path):
    features = write_precomp(tmp_path / "coco_precomp", "test", 6)
    write_precomp(tmp_path / "coco_precomp", "dev", 2)
    splits = load_dataset("vsepp_precomp", data_path=tmp_path, data_name="coco_precomp")
    assert set(splits) == {"test", "val"}
    test = splits["test"]
    assert test.images.kind == "feature" and len(test.images) == 6
    assert isinstance(test.images.features, np.memmap)
    assert test.caption_image.tolist() == np.repeat(np.arange(6), 5).tolist()
    assert test.captions[7] == "image 1 caption 2"
    assert np.array_equal(test.images.load(3), features[3])


def test_precomp_one_row_per_caption_maps_captions_to_their_image(tmp_path):
    features = write_precomp(tmp_path, "train", 3, per_caption_rows=True)
    train = load_dataset("vsepp_precomp", data_path=tmp_path)["train"]
    assert len(train.images) == 3 and len(train.captions) == 15
    assert train.caption_image.tolist() == np.repeat(np.arange(3), 5).tolist()
    assert np.array_equal(train.images.load(2), features[10])  # first row of image 2


def test_precomp_testall_holds_5000_images_for_1k_and_5k(tmp_path):
    write_precomp(tmp_path, "testall", 5000, dim=2)
    write_precomp(tmp_path, "test", 1000, dim=2)
    splits = load_dataset("vsepp_precomp", data_path=tmp_path)
    assert len(splits["testall"].images) == 5000 and len(splits["testall"].captions) == 25000
    assert len(splits["test"].images) == 1000
    fold = splits["testall"].caption_image[5000:10000]  # 1K fold 2: images 1000..1999
    assert fold.min() == 1000 and fold.max() == 1999


def test_precomp_regions_are_kept(tmp_path):
    np.save(tmp_path / "test_ims.npy", np.zeros((2, 36, 8), dtype=np.float32))
    (tmp_path / "test_caps.txt").write_text("a\nb\nc\nd\n")
    test = load_dataset("vsepp_precomp", data_path=tmp_path)["test"]
    assert test.images.load(1).shape == (36, 8)
    assert test.caption_image.tolist() == [0, 0, 1, 1]


def test_precomp_bad_shapes_and_empty_captions_are_named(tmp_path):
    np.save(tmp_path / "test_ims.npy", np.zeros((3, 4), dtype=np.float32))
    (tmp_path / "test_caps.txt").write_text("a\nb\nc\nd\n")
    with pytest.raises(DataError, match=r"test_ims.npy: 3 feature rows for 4 captions"):
        load_dataset("vsepp_precomp", data_path=tmp_path)
    np.save(tmp_path / "test_ims.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(DataError, match=r"test_ims.npy: feature shape \(3,\)"):
        load_dataset("vsepp_precomp", data_path=tmp_path)
    np.save(tmp_path / "test_ims.npy", np.zeros((2, 4), dtype=np.float32))
    (tmp_path / "test_caps.txt").write_text("a\n\nc\nd\n")
    with pytest.raises(DataError, match=r"test_caps.txt:line 2: empty caption"):
        load_dataset("vsepp_precomp", data_path=tmp_path)
    skipped = load_dataset("vsepp_precomp", data_path=tmp_path, on_error="skip")["test"]
    assert skipped.captions == ["a", "c", "d"] and skipped.caption_image.tolist() == [0, 1, 1]
    (tmp_path / "test_ims.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"test_ims.npy: not a .npy array"):
        load_dataset("vsepp_precomp", data_path=tmp_path)
    with pytest.raises(DataError, match="no precomputed split found"):
        load_dataset("vsepp_precomp", data_path=tmp_path / "nothing")


def pairs_root(tmp_path, image_writer):
    root = tmp_path / "imgs"
    for i in range(3):
        image_writer(root / "sub" / f"{i}.png", i)
    return root


def test_pairs_jsonl_groups_captions_by_image_and_split(tmp_path, image_writer):
    root = pairs_root(tmp_path, image_writer)
    rows = [
        {"image": "sub/0.png", "caption": "zero", "split": "train"},
        {"image": "sub/1.png", "caption": "one", "split": "train"},
        {"image": "sub/0.png", "caption": "nought", "split": "train"},
        {"image": "sub/2.png", "caption": "two", "split": "test", "id": "img-2"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    splits = load_dataset("pairs", path=path, root=root)
    train = splits["train"]
    assert train.image_keys == ["sub/0.png", "sub/1.png"]
    assert train.captions == ["zero", "nought", "one"]
    assert train.caption_image.tolist() == [0, 0, 1]
    assert splits["test"].image_keys == ["img-2"]
    assert np.asarray(train.images.load(1)).shape == (10, 12, 3)


def test_pairs_csv_and_mapping_of_files(tmp_path, image_writer):
    root = pairs_root(tmp_path, image_writer)
    (tmp_path / "train.csv").write_text(
        'image,caption\nsub/0.png,"zero, the first"\nsub/1.png,one\n'
    )
    (tmp_path / "test.csv").write_text("caption,image,id\ntwo,sub/2.png,7\n")
    splits = load_dataset(
        "pairs", path={"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}, root=root
    )
    assert splits["train"].captions == ["zero, the first", "one"]
    assert splits["test"].image_keys == ["7"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (
            '{"image": "sub/0.png", "caption": "ok"}\n{"image": "sub/1.png", caption}\n',
            "jsonl",
            r"pairs.jsonl:line 2: malformed JSON",
        ),
        ('{"image": "sub/0.png", "caption": ""}\n', "jsonl", r"pairs.jsonl:line 1: empty caption"),
        (
            '{"image": "sub/9.png", "caption": "x"}\n',
            "jsonl",
            r"pairs.jsonl:line 1: image file .*9.png is missing",
        ),
        ('["sub/0.png", "x"]\n', "jsonl", r"pairs.jsonl:line 1: list instead of an object"),
        (
            "image,caption\nsub/0.png,a\nsub/1.png,b,extra\n",
            "csv",
            r"pairs.csv:line 3: 3 fields; expected 2 fields",
        ),
        ("img,caption\nsub/0.png,a\n", "csv", r"pairs.csv:line 1: header \['img', 'caption'\]"),
        ("image,caption\n../outside.png,a\n", "csv", r"pairs.csv:line 2: image path .* leaves"),
        ("image,caption\n/etc/passwd,a\n", "csv", r"pairs.csv:line 2: absolute image path"),
    ],
)
def test_pairs_bad_lines_are_named(tmp_path, image_writer, content, suffix, message):
    root = pairs_root(tmp_path, image_writer)
    path = tmp_path / f"pairs.{suffix}"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset("pairs", path=path, root=root)


def test_pairs_symlink_out_of_root_is_refused_and_skip_counts(tmp_path, image_writer, caplog):
    root = pairs_root(tmp_path, image_writer)
    outside = image_writer(tmp_path / "private" / "x.png", 5)
    (root / "link.png").symlink_to(outside)
    (root / "linkdir").symlink_to(outside.parent)
    path = tmp_path / "pairs.csv"
    path.write_text("image,caption\nsub/0.png,ok\nlink.png,bad\nlinkdir/x.png,bad\nsub/1.png,\n")
    with pytest.raises(DataError, match=r"pairs.csv:line 3: image path 'link.png' points outside"):
        load_dataset("pairs", path=path, root=root)
    splits = load_dataset("pairs", path=path, root=root, on_error="skip")
    assert splits["train"].captions == ["ok"]
    assert "skipped 3 bad items" in caplog.text
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        load_dataset("pairs", path=path, root=root, on_error="ignore")
