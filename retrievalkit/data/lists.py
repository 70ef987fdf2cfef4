"""Metric-learning list files: Stanford Online Products and DeepFashion In-Shop.

SOP (``root/Ebay_train.txt``, ``root/Ebay_test.txt``): a header line
``image_id class_id super_class_id path``, then one image per line; ``path`` is
relative to ``root``. Label = ``class_id - 1`` (train 0..11,317, test 11,318..).

In-Shop (``root/list_eval_partition.txt``): line 1 the number of images, line 2
the header ``image_name item_id evaluation_status``, then lines ``img/... id_00000002
train|query|gallery``; image names are relative to ``root``. Labels number the
sorted item ids from 0 within train, and within query + gallery together (the two
share items). ``class_names`` holds the item ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrievalkit.data.errors import BadItems, DataError, read_text_file
from retrievalkit.data.paths import RootResolver, check_image_file
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import FileImageSource, LabelledSplit

SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]
INSHOP_HEADER = ["image_name", "item_id", "evaluation_status"]
INSHOP_SPLITS = ("train", "query", "gallery")


def read_lines(path: Path) -> list[str]:
    return read_text_file(path, "the dataset's list file").splitlines()


def _image(
    resolve: RootResolver, relative: str, listed_in: Path, where: str, check: bool, verify: bool
) -> Path:
    path = resolve(relative, listed_in, where)
    if check:
        check_image_file(path, listed_in, where, verify)
    return path


def _sop_split(root: Path, split: str, check: bool, verify: bool, bad: BadItems) -> LabelledSplit:
    listed = root / f"Ebay_{split}.txt"
    lines = read_lines(listed)
    resolve = RootResolver(root)
    if not lines or lines[0].split() != SOP_HEADER:
        got = lines[0] if lines else "(empty file)"
        raise DataError(listed, f"header {got!r}", " ".join(SOP_HEADER), "line 1")
    paths, keys, labels = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"line {number}"
        fields = line.split()
        try:
            if len(fields) != 4 or not all(f.isdigit() for f in fields[:3]):
                raise DataError(listed, f"{line!r}", "image_id class_id super_class_id path", where)
            paths.append(_image(resolve, fields[3], listed, where, check, verify))
        except DataError as err:
            bad.handle(err)
            continue
        keys.append(fields[3])
        labels.append(int(fields[1]) - 1)
    return LabelledSplit(
        name=f"sop/{split}",
        images=FileImageSource(paths),
        labels=np.asarray(labels, dtype=np.int64),
        keys=keys,
        class_names=None,
        source=str(listed),
    )


@register_dataset("sop")
def load_sop(
    root: str | Path, check_files: bool = True, verify_images: bool = False, on_error: str = "raise"
) -> dict[str, LabelledSplit]:
    """Stanford Online Products: splits ``train`` and ``test``."""
    root = Path(root)
    bad = BadItems(on_error, f"SOP lists in {root}")
    out = {s: _sop_split(root, s, check_files, verify_images, bad) for s in ("train", "test")}
    bad.report()
    return out


def _parse_inshop(root: Path, listed: Path, check: bool, verify: bool, bad: BadItems):
    lines = read_lines(listed)
    resolve = RootResolver(root)
    if len(lines) < 2 or lines[1].split() != INSHOP_HEADER:
        got = lines[1] if len(lines) > 1 else "(missing)"
        raise DataError(listed, f"header {got!r}", " ".join(INSHOP_HEADER), "line 2")
    if not lines[0].strip().isdigit():
        raise DataError(listed, f"{lines[0]!r}", "the number of images", "line 1")
    rows: list[tuple[str, Path, str, str]] = []  # split, path, key, item
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        where = f"line {number}"
        fields = line.split()
        try:
            if len(fields) != 3 or fields[2] not in INSHOP_SPLITS:
                raise DataError(
                    listed, f"{line!r}", "image_name item_id train|query|gallery", where
                )
            path = _image(resolve, fields[0], listed, where, check, verify)
        except DataError as err:
            bad.handle(err)
            continue
        rows.append((fields[2], path, fields[0], fields[1]))
    declared = int(lines[0].strip())
    if bad.count == 0 and declared != len(rows):
        raise DataError(listed, f"{len(rows)} image lines", f"{declared} as line 1 says", "line 1")
    return rows


@register_dataset("inshop")
def load_inshop(
    root: str | Path, check_files: bool = True, verify_images: bool = False, on_error: str = "raise"
) -> dict[str, LabelledSplit]:
    """DeepFashion In-Shop: splits ``train``, ``query`` and ``gallery``."""
    root = Path(root)
    listed = root / "list_eval_partition.txt"
    bad = BadItems(on_error, str(listed))
    rows = _parse_inshop(root, listed, check_files, verify_images, bad)
    bad.report()
    train_items = sorted({item for split, _, _, item in rows if split == "train"})
    test_items = sorted({item for split, _, _, item in rows if split != "train"})
    out = {}
    for split in INSHOP_SPLITS:
        items = train_items if split == "train" else test_items
        label_of = {item: i for i, item in enumerate(items)}
        members = [r for r in rows if r[0] == split]
        out[split] = LabelledSplit(
            name=f"inshop/{split}",
            images=FileImageSource([path for _, path, _, _ in members]),
            labels=np.asarray([label_of[item] for *_, item in members], dtype=np.int64),
            keys=[key for _, _, key, _ in members],
            class_names=items,
            source=str(listed),
        )
    return out
