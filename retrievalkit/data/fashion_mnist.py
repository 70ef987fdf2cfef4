"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (idx files, no download).

Protocols: ``unseen_classes`` (metric learning as on CUB/Cars: classes 0-4 of the
training file train, classes 5-9 of the test file test; with ``val_classes=v`` the
last v training classes (4, 3, ...) become a class-disjoint ``val`` split, so
choices are made on classes the model did not train on, never on the test
classes) and
``standard`` (all 10 classes; train = first 55,000 training images, val = last
5,000, test = the 10,000 test images).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from retrievalkit.data.errors import DataError
from retrievalkit.data.registry import register_dataset
from retrievalkit.data.splits import ArrayImageSource, LabelledSplit

ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic ``00 00 <type> <ndim>``, dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(
            path, "file not found", "the Debian package dataset-fashion-mnist"
        ) from None
    except (OSError, EOFError) as err:
        raise DataError(path, f"unreadable ({err})", "an idx file, optionally gzipped") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(path, f"bad magic number {raw[:4].hex()}", "00 00 <type> <ndim>")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(path, f"size {len(raw)} bytes", f"{expected} bytes for shape {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _split(
    name: str, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, source: str, offset: str
) -> LabelledSplit:
    return LabelledSplit(
        name=f"fashion_mnist/{name}",
        images=ArrayImageSource(np.ascontiguousarray(images[indices])),
        labels=labels[indices].astype(np.int64),
        keys=[f"{offset}:{i}" for i in indices],
        class_names=CLASS_NAMES,
        source=source,
    )


@register_dataset("fashion_mnist")
def load_fashion_mnist(
    protocol: str = "unseen_classes",
    root: str | Path = ROOT,
    limit: int | None = None,
    val_classes: int = 0,
) -> dict[str, LabelledSplit]:
    """Splits of Fashion-MNIST; ``limit`` keeps the first N images of each file.

    ``val_classes`` (``unseen_classes`` only, 0..3): training classes held out as
    the ``val`` split (at least 2 classes stay for training).
    """
    if not 0 <= val_classes <= 3 or (val_classes and protocol != "unseen_classes"):
        raise ValueError(
            f"fashion_mnist: val_classes must be 0..3 and needs protocol unseen_classes, "
            f"got {val_classes} with {protocol!r}"
        )
    root = Path(root)
    train_x = read_idx(root / "train-images-idx3-ubyte.gz")
    train_y = read_idx(root / "train-labels-idx1-ubyte.gz")
    test_x = read_idx(root / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    for name, images, labels in (("train", train_x, train_y), ("t10k", test_x, test_y)):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                root / f"{name}-*-ubyte.gz",
                f"images {images.shape} and labels {labels.shape}",
                "images [N, 28, 28] and labels [N]",
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
            raise DataError(
                root / f"{name}-labels-idx1-ubyte.gz", f"label {labels.max()}", "labels 0..9"
            )
    if limit is not None:
        train_x, train_y, test_x, test_y = (
            train_x[:limit],
            train_y[:limit],
            test_x[:limit],
            test_y[:limit],
        )
    source = f"{root}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz"
    if protocol == "unseen_classes":
        first_val = 5 - val_classes
        splits = {
            "train": _split(
                "train", train_x, train_y, np.flatnonzero(train_y < first_val), source, "train"
            ),
            "test": _split("test", test_x, test_y, np.flatnonzero(test_y >= 5), source, "t10k"),
        }
        if val_classes:
            held_out = np.flatnonzero((train_y >= first_val) & (train_y < 5))
            splits["val"] = _split("val", train_x, train_y, held_out, source, "train")
        return splits
    if protocol == "standard":
        n_val = min(5000, len(train_x) // 12)
        cut = len(train_x) - n_val
        return {
            "train": _split("train", train_x, train_y, np.arange(cut), source, "train"),
            "val": _split("val", train_x, train_y, np.arange(cut, len(train_x)), source, "train"),
            "test": _split("test", test_x, test_y, np.arange(len(test_x)), source, "t10k"),
        }
    raise ValueError(f"unknown Fashion-MNIST protocol {protocol!r}; use unseen_classes or standard")
