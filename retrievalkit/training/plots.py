"""Pictures a person can check: training curves and retrieval grids (PNG)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.training.run_log import RunLog

_SKIP_STEP_COLUMNS = {"step", "epoch", "lr"}
_SCORE_KEYS = ("rsum", "i2t_r1", "t2i_r1", "recall@1", "map_at_r", "map")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(run_log: RunLog, out_path: Path, title: str = "") -> Path:
    """Loss terms per step (left) and validation scores per epoch (right)."""
    plt = _pyplot()
    steps, epochs = run_log.read_steps(), run_log.read_epochs()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5))
    ylabel = "training loss"
    if steps:
        xs = [row["step"] for row in steps]
        plotted = []
        columns = dict.fromkeys(key for row in steps for key in row)  # stages may add terms
        for column in columns:
            # ``<term>.<stat>`` columns are adversaries' health numbers, not losses
            if column not in _SKIP_STEP_COLUMNS and "." not in column:
                values = np.array([row.get(column, np.nan) for row in steps], dtype=float)
                ax_loss.plot(xs, values, label=column)
                plotted.append(values[np.isfinite(values)])
        ax_loss.legend()
        if _wants_log_scale(np.concatenate(plotted) if plotted else np.array([])):
            ax_loss.set_yscale("log")  # e.g. VSE++ sum-of-hinges warm-up, then max-of-hinges
            ylabel += " (log scale)"
    ax_loss.set(xlabel="step", ylabel=ylabel, title="training loss")
    scored = [e for e in epochs if any(k in e for k in _SCORE_KEYS)]
    for key in _SCORE_KEYS:
        if scored and key in scored[0]:
            ax_val.plot([e["epoch"] for e in scored], [e[key] for e in scored], "o-", label=key)
    if scored:
        ax_val.legend()
    ax_val.set(xlabel="epoch", ylabel="score (%)", title="validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def _wants_log_scale(values: np.ndarray) -> bool:
    """Log y-axis when all values are positive and span more than 30x (loss terms
    whose scale changes by stage would otherwise flatten into the x-axis)."""
    if values.size == 0 or values.min() <= 0:
        return False
    return bool(values.max() / values.min() > 30)


def _show_image(ax: Any, image: Any, border: str | None = None) -> None:
    array = np.asarray(image)
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if border:
        for spine in ax.spines.values():
            spine.set_edgecolor(border)
            spine.set_linewidth(4)


def _hits_grid(
    draw_query: Any, hits: Tensor, correct: Tensor, images: Any, title: str, out_path: Path
) -> Path:
    """Rows of (query cell, top-k images with green/red borders) -> PNG."""
    plt = _pyplot()
    num_q, k = hits.shape
    fig, axes = plt.subplots(num_q, k + 1, figsize=(1.8 * (k + 1), 1.8 * num_q), squeeze=False)
    for row in range(num_q):
        draw_query(axes[row, 0], row)
        for col in range(k):
            border = "green" if correct[row, col] else "red"
            _show_image(axes[row, col + 1], images.load(int(hits[row, col])), border)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def plot_text_to_image_grid(
    queries: list[str], hits: Tensor, correct: Tensor, images: Any, out_path: Path
) -> Path:
    """One row per text query: the query, then its top-k images.

    Args:
        hits: ``[Q, k]`` image indices, best first. correct: ``[Q, k]`` bool.
        images: an ``ImageSource`` (``load(i)`` -> PIL image).
    """

    def draw_query(ax: Any, row: int) -> None:
        ax.axis("off")
        ax.text(0, 0.5, textwrap.fill(queries[row], 22), fontsize=9, va="center")

    title = "text -> image: top hits (green = the query's own image)"
    return _hits_grid(draw_query, hits, correct, images, title, out_path)


def plot_image_to_image_grid(
    query_indices: Tensor, hits: Tensor, correct: Tensor, images: Any, out_path: Path
) -> Path:
    """One row per query image, then its top-k neighbours (green = same class)."""

    def draw_query(ax: Any, row: int) -> None:
        _show_image(ax, images.load(int(query_indices[row])), "blue")

    title = "image -> image: query (blue) and top hits (green = same class)"
    return _hits_grid(draw_query, hits, correct, images, title, out_path)


def top_k(queries: Tensor, references: Tensor, k: int, exclude_self: bool = False) -> Tensor:
    """Indices of the ``k`` best references per query: ``[Q, D] x [N, D] -> [Q, k]``."""
    scores = queries @ references.T
    if exclude_self:
        scores.fill_diagonal_(-torch.inf)
    return scores.topk(min(k, references.shape[0]), dim=1).indices
