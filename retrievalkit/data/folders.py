"""Labelled images from folders: ``root/<class>/<image>`` (torchvision ImageFolder style).

Layouts (``protocol``):
- ``"folders"``: ``root/train/<class>/...``, ``root/val/...``, ``root/test/...``; a
  class name has one label in every split (labels = index in the sorted union).
- ``"unseen_classes"``: ``root/<class>/...``; the sorted classes' first half trains,
  the second half tests (the CUB-200 / Cars-196 metric-learning protocol).
- ``"single"``: ``root/<class>/...`` as one split ``"all"``.
- ``"auto"`` (default): ``"folders"`` if ``root`` has a train/val/test folder,
  else ``"unseen_classes"``.
Files are those with an image suffix (``paths.IMAGE_EXTENSIONS``), sorted; hidden
files and folders are skipped; symlinks leading out of ``root`` are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from retrievalkit.data.errors import BadItems, DataError
from retrievalkit.data.paths import IMAGE_EXTENSIONS, RootResolver, check_image_file
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import FileImageSource, LabelledSplit

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")


def class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(folder, "folder not found", "a folder of class folders")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_of(
    resolve: RootResolver, folder: Path, verify: bool, bad: BadItems
) -> list[tuple[Path, str]]:
    """Image files in ``folder`` (recursively), as (path, key relative to root)."""
    found = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(resolve.root).as_posix()
        if any(part.startswith(".") for part in file.relative_to(folder).parts):
            continue
        if file.suffix.lower() not in IMAGE_EXTENSIONS or file.is_dir():
            continue
        try:
            path = resolve(relative, resolve.root, relative)
            check_image_file(path, resolve.root, relative, verify)
        except DataError as err:
            bad.handle(err)
            continue
        found.append((path, relative))
    return found


def _split(
    name: str,
    resolve: RootResolver,
    folder: Path,
    classes: list[str],
    label_of: dict[str, int],
    verify: bool,
    bad: BadItems,
) -> LabelledSplit:
    paths: list[Path] = []
    keys: list[str] = []
    labels: list[int] = []
    for cls in classes:
        files = _images_of(resolve, folder / cls, verify, bad)
        if not files:
            log.warning("%s: class folder has no images", folder / cls)
        for path, key in files:
            paths.append(path)
            keys.append(key)
            labels.append(label_of[cls])
    names = sorted(label_of, key=label_of.__getitem__)
    return LabelledSplit(
        name=name,
        images=FileImageSource(paths),
        labels=np.asarray(labels, dtype=np.int64),
        keys=keys,
        class_names=names,
        source=str(folder),
    )


@register_dataset("image_folder")
def load_image_folder(
    root: str | Path,
    protocol: str = "auto",
    verify_images: bool = False,
    on_error: str = "raise",
) -> dict[str, LabelledSplit]:
    """Labelled splits from class folders under ``root`` (see the module docstring)."""
    root = Path(root)
    if protocol == "auto":
        has_splits = any((root / s).is_dir() for s in SPLIT_FOLDERS)
        protocol = "folders" if has_splits else "unseen_classes"
    bad = BadItems(on_error, str(root))
    resolve = RootResolver(root)
    tag = root.name or "image_folder"
    if protocol == "folders":
        present = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
        per_split = {s: class_folders(root / s) for s in present}
        label_of = {
            c: i for i, c in enumerate(sorted({c for cs in per_split.values() for c in cs}))
        }
        out = {
            s: _split(f"{tag}/{s}", resolve, root / s, cs, label_of, verify_images, bad)
            for s, cs in per_split.items()
        }
    elif protocol in ("unseen_classes", "single"):
        classes = class_folders(root)
        label_of = {c: i for i, c in enumerate(classes)}
        if protocol == "single":
            parts = {"all": classes}
        else:
            if len(classes) < 2:
                raise DataError(
                    root, f"{len(classes)} class folder(s)", "at least 2 for unseen_classes"
                )
            half = len(classes) // 2
            parts = {"train": classes[:half], "test": classes[half:]}
        out = {
            s: _split(f"{tag}/{s}", resolve, root, cs, label_of, verify_images, bad)
            for s, cs in parts.items()
        }
    else:
        raise ValueError(
            f"unknown protocol {protocol!r}; use auto, folders, unseen_classes, single"
        )
    bad.report()
    return out
