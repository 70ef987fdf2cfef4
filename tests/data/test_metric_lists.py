"""Metric-learning formats: class folders, SOP and In-Shop lists, with named errors."""

import numpy as np
import pytest

from retrievalkit.data import DataError, LabelledImageDataset, load_dataset


def class_tree(root, image_writer, classes=("cat", "dog", "eel", "fox"), per_class=2):
    for c, name in enumerate(classes):
        for i in range(per_class):
            image_writer(root / name / f"{i}.jpg", 10 * c + i)
    (root / classes[0] / "notes.txt").write_text("not an image")
    (root / classes[0] / ".hidden.jpg").write_text("hidden")


def test_image_folder_unseen_classes_by_default(tmp_path, image_writer):
    class_tree(tmp_path, image_writer)
    splits = load_dataset("image_folder", root=tmp_path)
    assert set(splits) == {"train", "test"}
    train, test = splits["train"], splits["test"]
    assert train.keys == ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg", "dog/1.jpg"]
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [2, 2, 3, 3]
    assert train.class_names == ["cat", "dog", "eel", "fox"]
    item = LabelledImageDataset(test, lambda im: np.asarray(im))[3]
    assert item[1] == 3 and item[2] == 3 and item[0].shape == (10, 12, 3)
    single = load_dataset("image_folder", root=tmp_path, protocol="single")
    assert len(single["all"].labels) == 8


def test_image_folder_split_folders_share_class_labels(tmp_path, image_writer):
    class_tree(tmp_path / "train", image_writer, ("a", "b", "c"))
    class_tree(tmp_path / "test", image_writer, ("b", "c"), per_class=1)
    splits = load_dataset("image_folder", root=tmp_path)
    assert set(splits) == {"train", "test"}
    assert splits["test"].labels.tolist() == [1, 2]
    assert splits["test"].keys == ["test/b/0.jpg", "test/c/0.jpg"]


def test_image_folder_corrupt_image_and_symlink_out(tmp_path, image_writer):
    root = tmp_path / "data"
    class_tree(root, image_writer)
    (root / "dog" / "1.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"dog/1.jpg: image file .* is not readable"):
        load_dataset("image_folder", root=root, verify_images=True)
    skipped = load_dataset("image_folder", root=root, verify_images=True, on_error="skip")
    assert skipped["train"].keys == ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg"]
    image_writer(tmp_path / "elsewhere.jpg")
    (root / "fox" / "2.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(DataError, match=r"fox/2.jpg: image path .* points outside the root"):
        load_dataset("image_folder", root=root)


def write_sop(root, image_writer, lines_train=None):
    header = "image_id class_id super_class_id path\n"
    train = lines_train or [
        "1 1 1 bicycle_final/111_0.JPG",
        "2 1 1 bicycle_final/111_1.JPG",
        "3 2 2 chair_final/222_0.JPG",
        "4 2 2 chair_final/222_1.JPG",
    ]
    test = ["5 3 1 bicycle_final/333_0.JPG", "6 3 1 bicycle_final/333_1.JPG"]
    for line in train + test:
        path = line.split()[-1]
        if ".." not in path:
            image_writer(root / path)
    (root / "Ebay_train.txt").write_text(header + "\n".join(train) + "\n")
    (root / "Ebay_test.txt").write_text(header + "\n".join(test) + "\n")


def test_sop_lists(tmp_path, image_writer):
    write_sop(tmp_path, image_writer)
    splits = load_dataset("sop", root=tmp_path)
    assert splits["train"].labels.tolist() == [0, 0, 1, 1]
    assert splits["test"].labels.tolist() == [2, 2]
    assert splits["test"].keys == ["bicycle_final/333_0.JPG", "bicycle_final/333_1.JPG"]
    assert splits["train"].images.load(2).size == (12, 10)


def test_sop_bad_header_and_lines_are_named(tmp_path, image_writer):
    write_sop(tmp_path, image_writer, ["1 1 1 a/x.JPG", "2 one 1 a/y.JPG", "3 1 1 ../z.JPG"])
    with pytest.raises(DataError, match=r"Ebay_train.txt:line 3: '2 one 1 a/y.JPG'"):
        load_dataset("sop", root=tmp_path)
    skipped = load_dataset("sop", root=tmp_path, on_error="skip")
    assert skipped["train"].keys == ["a/x.JPG"]
    (tmp_path / "Ebay_test.txt").write_text("id class path\n")
    with pytest.raises(DataError, match=r"Ebay_test.txt:line 1: header 'id class path'"):
        load_dataset("sop", root=tmp_path, on_error="skip")


def write_inshop(root, image_writer, count=None):
    rows = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
        ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "query"),
        ("img/MEN/Denim/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
        ("img/MEN/Denim/id_00000007/01_1_front.jpg", "id_00000007", "gallery"),
        ("img/MEN/Denim/id_00000007/01_3_back.jpg", "id_00000007", "query"),
    ]
    for path, *_ in rows:
        image_writer(root / path)
    lines = [str(count or len(rows)), "image_name item_id evaluation_status"]
    lines += [f"{p}  {i}  {s}" for p, i, s in rows]
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def test_inshop_partition(tmp_path, image_writer):
    write_inshop(tmp_path, image_writer)
    splits = load_dataset("inshop", root=tmp_path)
    assert set(splits) == {"train", "query", "gallery"}
    assert splits["train"].labels.tolist() == [0, 0]
    assert splits["query"].labels.tolist() == [1, 0]  # id_07 -> 0, id_80 -> 1 (sorted)
    assert splits["gallery"].labels.tolist() == [1, 0]
    assert splits["query"].class_names == ["id_00000007", "id_00000080"]
    assert splits["gallery"].keys[1] == "img/MEN/Denim/id_00000007/01_1_front.jpg"


def test_inshop_count_and_missing_files(tmp_path, image_writer):
    write_inshop(tmp_path, image_writer, count=7)
    with pytest.raises(
        DataError, match=r"list_eval_partition.txt:line 1: 6 image lines; expected 7"
    ):
        load_dataset("inshop", root=tmp_path)
    write_inshop(tmp_path, image_writer)
    (tmp_path / "img/MEN/Denim/id_00000080/01_2_side.jpg").unlink()
    with pytest.raises(DataError, match=r"list_eval_partition.txt:line 6: image file .* missing"):
        load_dataset("inshop", root=tmp_path)
    assert len(load_dataset("inshop", root=tmp_path, on_error="skip")["gallery"].keys) == 1
    with pytest.raises(DataError, match=r"list_eval_partition.txt: file not found"):
        load_dataset("inshop", root=tmp_path / "none")
