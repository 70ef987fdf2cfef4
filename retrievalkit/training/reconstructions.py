"""mFSR at the end of a run: what the reconstructions look like.

- ``reconstructions.png``: one row per test pair: the real image, its caption,
  the image the generator rebuilt from the image's own three parts, and the
  caption the decoder rebuilt from the caption's own parts;
- ``captions.txt``: ``image key <TAB> true caption <TAB> decoded caption``, one
  line per pair.

A model without a generator (or decoder) leaves its column out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.models.modes import eval_mode
from retrievalkit.training.plots import _pyplot, _show_image


def to_display(pixels: Tensor) -> np.ndarray:
    """``[C, H, W]`` in [-1, 1] -> ``[H, W, C]`` (or ``[H, W]``) float in [0, 1] for imshow."""
    array = ((pixels.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array


@torch.no_grad()
def reconstruct(
    model: Any, images: Tensor, captions: Sequence[str], max_len: int = 20
) -> dict[str, Any]:
    """The model's reconstructions of matched ``images [N, C, H, W]`` (normalized, on
    the model's device) and ``captions`` (N): ``real`` and ``generated`` pixels in
    [-1, 1] (None without a generator), ``decoded`` captions (None without a decoder)."""
    with eval_mode(model):
        out: dict[str, Any] = {"real": None, "generated": None, "decoded": None}
        if model.generator is not None:
            out["real"] = model.reconstruction_target(images)
            out["generated"] = model.reconstruct_images(images)
        if model.decoder is not None:
            out["decoded"] = model.decode_captions(list(captions), max_len)
        return out


def write_captions(
    path: Path, keys: Sequence[str], captions: Sequence[str], decoded: Sequence[str]
) -> Path:
    """``key <TAB> true caption <TAB> decoded caption`` lines (tabs/newlines in text -> spaces)."""

    def clean(text: str) -> str:
        return " ".join(text.split())

    lines = ["image\ttrue caption\tdecoded caption"]
    lines += [
        f"{clean(k)}\t{clean(c)}\t{clean(d)}"
        for k, c, d in zip(keys, captions, decoded, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot_reconstructions(
    path: Path,
    captions: Sequence[str],
    real: Tensor | None,
    generated: Tensor | None,
    decoded: Sequence[str] | None,
    title: str = "mFSR reconstructions",
) -> Path:
    """Rows of (real image, its caption, generated image, decoded caption) -> PNG."""
    plt = _pyplot()
    rows = len(captions)
    columns: list[str] = []
    if real is not None:
        columns += ["real", "caption", "generated"]
    else:
        columns += ["caption"]
    if decoded is not None:
        columns.append("decoded")
    widths = [1.0 if c in ("real", "generated") else 2.2 for c in columns]
    fig, axes = plt.subplots(
        rows,
        len(columns),
        figsize=(1.6 * sum(widths), 1.6 * rows),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    for row in range(rows):
        for col, kind in enumerate(columns):
            ax = axes[row, col]
            if kind in ("real", "generated"):
                images = real if kind == "real" else generated
                assert images is not None
                _show_image(ax, to_display(images[row]))
            else:
                text = captions[row] if kind == "caption" else (decoded or [""])[row]
                ax.axis("off")
                ax.text(0, 0.5, textwrap.fill(text or "(empty)", 26), fontsize=8, va="center")
            if row == 0:
                ax.set_title(kind, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_reconstructions(
    model: Any,
    images: Tensor,
    captions: Sequence[str],
    keys: Sequence[str],
    out_dir: Path,
) -> list[Path]:
    """Write ``reconstructions.png`` (and ``captions.txt`` when the model has a
    decoder) for matched ``images``/``captions``/``keys``; returns the paths."""
    result = reconstruct(model, images, captions)
    written = [
        plot_reconstructions(
            out_dir / "reconstructions.png",
            captions,
            result["real"],
            result["generated"],
            result["decoded"],
        )
    ]
    if result["decoded"] is not None:
        written.append(write_captions(out_dir / "captions.txt", keys, captions, result["decoded"]))
    return written
