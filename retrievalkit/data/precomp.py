"""vsepp / SCAN precomputed features: ``data_path/{split}_ims.npy`` + ``{split}_caps.txt``.

Files per split (vsepp names): ``train``, ``dev`` (our ``val``), ``test`` and, for
COCO, ``testall`` (5,000 images: the 5K test, and the five 1K folds of the 1K
protocol). ``{split}_caps.txt`` has one caption per line; ``{split}_ims.npy`` has
features ``[R, F]`` (vsepp) or ``[R, regions, F]`` (SCAN), memory-mapped.

Which captions belong to which image (as in vsepp's ``PrecompDataset``): with
``R`` feature rows and ``M`` captions,
- ``R != M``: one row per image; ``M / R`` captions per image, consecutive
  (captions ``i*k .. i*k+k-1`` belong to image ``i``); ``M`` must be a multiple of ``R``.
- ``R == M``: one row per caption (vsepp's COCO train, 10-crop sets); caption
  ``m`` belongs to image ``m // captions_per_image`` (default 5) and image ``i``'s
  feature is row ``i * captions_per_image``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from retrievalkit.data.errors import BadItems, DataError
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import CrossModalSplit, FeatureSource

log = logging.getLogger(__name__)

FILE_SPLITS = {"train": "train", "val": "dev", "test": "test", "testall": "testall"}


def read_captions(path: Path, on_error: str = "raise") -> list[str | None]:
    """Lines of a captions file (UTF-8); an empty line is a DataError naming its line.

    With ``on_error="skip"`` a bad line becomes ``None`` (the caption is dropped but
    the numbering of the others, which ties them to images, is kept).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found", "one caption per line") from None
    bad = BadItems(on_error, str(path))
    captions: list[str | None] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8").strip()
            if not text:
                raise DataError(path, "empty caption", "one caption per line", f"line {number}")
        except UnicodeDecodeError as err:
            text = None
            bad.handle(DataError(path, f"not UTF-8 ({err})", "UTF-8 text", f"line {number}"))
        except DataError as err:
            text = None
            bad.handle(err)
        captions.append(text)
    bad.report()
    return captions


def load_features(path: Path) -> np.ndarray:
    """Memory-map ``.npy`` features ``[R, F]`` or ``[R, regions, F]``."""
    try:
        features = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(path, "file not found", "a .npy feature array") from None
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a .npy array ({err})", "a .npy feature array") from None
    if features.ndim < 2 or features.shape[0] == 0:
        raise DataError(path, f"feature shape {features.shape}", "[images, F] or [images, R, F]")
    return features


def load_precomp_split(
    data_path: Path, file_split: str, name: str, captions_per_image: int, on_error: str
) -> CrossModalSplit:
    ims, caps = data_path / f"{file_split}_ims.npy", data_path / f"{file_split}_caps.txt"
    features = load_features(ims)
    captions = read_captions(caps, on_error)
    rows, m = features.shape[0], len(captions)
    if rows == m:
        if m % captions_per_image:
            raise DataError(
                ims,
                f"{rows} rows, one per caption, not a multiple of {captions_per_image}",
                f"{captions_per_image} captions per image (captions_per_image option)",
            )
        n_images, per_image = m // captions_per_image, captions_per_image
        source_rows = np.arange(n_images, dtype=np.int64) * per_image
    elif m % rows == 0:
        n_images, per_image, source_rows = rows, m // rows, None
    else:
        raise DataError(
            ims,
            f"{rows} feature rows for {m} captions in {caps.name}",
            "one row per image (captions a multiple of rows) or one row per caption",
        )
    caption_image = np.arange(m, dtype=np.int64) // per_image
    kept = np.asarray([c is not None for c in captions])
    return CrossModalSplit(
        name=name,
        images=FeatureSource(features, source_rows),
        image_keys=[f"{file_split}:{i}" for i in range(n_images)],
        captions=[c for c in captions if c is not None],
        caption_image=caption_image[kept],
        source=f"{ims} + {caps}",
    )


@register_dataset("vsepp_precomp")
def load_vsepp_precomp(
    data_path: str | Path,
    data_name: str | None = None,
    captions_per_image: int = 5,
    on_error: str = "raise",
) -> dict[str, CrossModalSplit]:
    """Splits ``train``/``val``/``test`` (and ``testall`` when present) of a precomp set.

    ``data_name`` (e.g. ``"coco_precomp"``) is a sub-directory of ``data_path``, as in
    vsepp's ``--data_path`` / ``--data_name``. Missing split files are left out
    (train or test must exist).
    """
    root = Path(data_path) / data_name if data_name else Path(data_path)
    splits: dict[str, CrossModalSplit] = {}
    for split, file_split in FILE_SPLITS.items():
        if not (root / f"{file_split}_caps.txt").exists():
            continue
        label = f"{data_name or root.name}/{split}"
        splits[split] = load_precomp_split(root, file_split, label, captions_per_image, on_error)
    if not splits:
        raise DataError(
            root, "no precomputed split found", "files like test_ims.npy + test_caps.txt"
        )
    log.info(
        "precomp %s: %s",
        root,
        {s: (len(v.images), len(v.captions)) for s, v in splits.items()},
    )
    return splits
