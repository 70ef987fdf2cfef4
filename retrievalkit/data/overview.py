"""What a dataset holds: counts per split (``data info``) and a picture grid (``data show``)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from retrievalkit.data.splits import CrossModalSplit, LabelledSplit


def split_summary(split: CrossModalSplit | LabelledSplit) -> dict[str, Any]:
    """Counts of one split: images, captions or labels/classes, item kind, source."""
    row: dict[str, Any] = {
        "name": split.name,
        "kind": split.images.kind,
        "images": len(split.images),
    }
    if isinstance(split, CrossModalSplit):
        per_image = np.bincount(split.caption_image, minlength=len(split.images))
        row["captions"] = len(split.captions)
        row["captions_per_image"] = (
            f"{per_image.min()}-{per_image.max()}" if len(per_image) else "0"
        )
    else:
        row["classes"] = len(np.unique(split.labels))
    row["source"] = split.source
    return row


def dataset_summary(splits: dict[str, CrossModalSplit | LabelledSplit]) -> str:
    """A readable table of :func:`split_summary` for every split, then the sources."""
    rows = {name: split_summary(split) for name, split in splits.items()}
    columns = [
        c
        for c in ("kind", "images", "captions", "captions_per_image", "classes")
        if any(c in r for r in rows.values())
    ]
    width = max(len(n) for n in rows) if rows else 5
    lines = [f"{'split':<{width}}  " + "  ".join(f"{c:>18}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row.get(c, ''):>18}" for c in columns))
    for source in dict.fromkeys(r["source"] for r in rows.values()):
        lines.append(f"source: {source}")
    return "\n".join(lines)


def printable(key: str) -> str:
    """``key``, with emoji and other symbols written as code points (plot fonts lack them)."""
    if all(ord(ch) < 0x2000 for ch in key):
        return key
    return " ".join(f"U+{ord(ch):04X}" for ch in key)


def _cell_text(split: CrossModalSplit | LabelledSplit, index: int, max_captions: int) -> str:
    if isinstance(split, CrossModalSplit):
        captions = [
            c for c, i in zip(split.captions, split.caption_image, strict=True) if i == index
        ]
        lines = [printable(split.image_keys[index]), *captions[:max_captions]]
    else:
        label = int(split.labels[index])
        name = split.class_names[label] if split.class_names else f"class {label}"
        lines = [name, printable(split.keys[index])]
    return "\n".join(textwrap.shorten(line, 34, placeholder="…") for line in lines)


def save_grid(
    split: CrossModalSplit | LabelledSplit,
    out: str | Path,
    n: int = 24,
    seed: int = 0,
    max_captions: int = 3,
    columns: int = 6,
) -> list[int]:
    """A PNG grid of ``n`` items (seeded choice) with their key and captions or label.

    Returns the item indices shown. Feature items are drawn as a bar of values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = len(split.images)
    chosen = sorted(
        np.random.default_rng(seed).choice(total, min(n, total), replace=False).tolist()
    )
    rows = max(1, -(-len(chosen) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen, strict=False):
        item = split.images.load(index)
        if split.images.kind == "feature":
            ax.plot(np.asarray(item, dtype=np.float32).reshape(-1)[:256], linewidth=0.5)
        else:
            array = np.asarray(item)
            ax.imshow(array, cmap="gray" if array.ndim == 2 else None, interpolation="nearest")
        ax.set_title(_cell_text(split, index, max_captions), fontsize=7, loc="left")
    fig.suptitle(f"{split.name}: {len(chosen)} of {total} items", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return chosen
