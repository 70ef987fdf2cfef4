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


def style_counts(splits: dict[str, CrossModalSplit | LabelledSplit]) -> dict[str, Any] | None:
    """Distinct (key, style) images over all splits: count per style and how many keys
    have 1, 2, ... styles; None when the splits carry no styles."""
    pairs: set[tuple[str, str]] = set()
    for split in splits.values():
        if split.image_styles is None:
            continue
        keys = split.image_keys if isinstance(split, CrossModalSplit) else split.keys
        pairs.update(zip(keys, split.image_styles, strict=True))
    if not pairs:
        return None
    per_style: dict[str, int] = {}
    per_key: dict[str, int] = {}
    for key, style in pairs:
        per_style[style] = per_style.get(style, 0) + 1
        per_key[key] = per_key.get(key, 0) + 1
    n_styles = len(per_style)
    coverage = {n: sum(1 for c in per_key.values() if c == n) for n in range(1, n_styles + 1)}
    return {"images_per_style": per_style, "keys_with_n_styles": coverage}


def style_summary(splits: dict[str, CrossModalSplit | LabelledSplit]) -> str:
    """Lines for ``data info``: images per style, emoji per number of styles, and the
    licence and attribution of each style ("" when the splits carry no styles)."""
    from retrievalkit.data.emoji.styles import STYLES

    counts = style_counts(splits)
    if counts is None:
        return ""
    per_style, coverage = counts["images_per_style"], counts["keys_with_n_styles"]
    order = [s for s in STYLES if s in per_style] + sorted(set(per_style) - set(STYLES))
    lines = ["images per style: " + ", ".join(f"{s} {per_style[s]}" for s in order)]
    lines.append("emoji drawn in n styles: " + ", ".join(f"{n}: {c}" for n, c in coverage.items()))
    for name in order:
        if name in STYLES:
            style = STYLES[name]
            version = f"@{style.version}" if style.version else ""
            lines.append(
                f"style {name}: {style.licence}; {style.attribution} [{style.package}{version}]"
            )
    return "\n".join(lines)


def dataset_summary(splits: dict[str, CrossModalSplit | LabelledSplit]) -> str:
    """A readable table of :func:`split_summary` for every split, then the sources
    (and, for emoji, the styles with their licences)."""
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
    styles = style_summary(splits)
    return "\n".join([*lines, styles] if styles else lines)


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


def save_style_grid(
    split: CrossModalSplit | LabelledSplit, out: str | Path, n: int = 24, seed: int = 0
) -> list[str]:
    """A PNG with one row per key (seeded choice of ``n // styles`` keys) and one column
    per style: the same emoji in each art style side by side. Returns the keys shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if split.image_styles is None:
        raise ValueError(f"{split.name} has no image styles")
    from retrievalkit.data.emoji.styles import STYLES

    keys = split.image_keys if isinstance(split, CrossModalSplit) else split.keys
    present = set(split.image_styles)
    styles = [s for s in STYLES if s in present] + sorted(present - set(STYLES))
    where = {(k, s): i for i, (k, s) in enumerate(zip(keys, split.image_styles, strict=True))}
    distinct = list(dict.fromkeys(keys))
    count = min(max(1, n // len(styles)), len(distinct))
    chosen = [
        distinct[i]
        for i in sorted(
            np.random.default_rng(seed).choice(len(distinct), count, replace=False).tolist()
        )
    ]
    fig, axes = plt.subplots(
        count, len(styles), figsize=(2.2 * len(styles), 2.4 * count), squeeze=False
    )
    for row, key in enumerate(chosen):
        first = where[next((key, s) for s in styles if (key, s) in where)]
        label = _cell_text(split, first, 1).replace("\n", " | ")
        for col, style in enumerate(styles):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            index = where.get((key, style))
            if index is None:
                ax.text(0.5, 0.5, f"no {style} image", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(np.asarray(split.images.load(index)), interpolation="nearest")
            if row == 0:
                ax.set_title(style, fontsize=10)
            if col == 0:
                ax.set_ylabel(textwrap.fill(label, 28), fontsize=7)
    fig.suptitle(f"{split.name}: {count} emoji in {len(styles)} styles", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return chosen
