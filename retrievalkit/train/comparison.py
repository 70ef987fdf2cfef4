"""Summaries of a multi-seed comparison: mean and spread per metric, a table, a chart.

Pure functions of the runs' records (one ``metrics.json`` per recipe and seed,
with ``test`` scores and ``wall_s``); ``compare.py`` produces the records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRIC_KEYS = (
    "recall@1",
    "recall@2",
    "recall@4",
    "recall@8",
    "map_at_r",
    "r_precision",
    "nmi",
)
CROSS_MODAL_KEYS = ("rsum", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
CHART_KEYS = ("recall@1", "map_at_r", "r_precision", "nmi", "rsum", "i2t_r1", "t2i_r1")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (0 for one value) of ``n`` values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise ValueError("no values to summarize")
        n = len(values)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(mean, math.sqrt(var), n)

    def format(self, digits: int = 1) -> str:
        """``mean ± std``; the mean alone for one value (no spread to show)."""
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class RecipeSummary:
    """One recipe's seeds: ``stats[metric]`` over the seeds, and the seeds used."""

    name: str
    seeds: tuple[int, ...]
    stats: dict[str, Stat]


def metric_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The known score keys present in every record's ``test`` scores, in table order."""
    if not records:
        return []
    present = set.intersection(*(set(r["test"]) for r in records))
    return [k for k in (*METRIC_KEYS, *CROSS_MODAL_KEYS) if k in present]


def summarize(
    name: str, records: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> RecipeSummary:
    """Mean and spread of each of ``keys`` (test scores) and of ``wall_s`` over seeds.

    Args:
        records: one per seed: ``{"seed": int, "wall_s": float, "test": {key: float}}``.
    """
    stats = {key: Stat.of([float(r["test"][key]) for r in records]) for key in keys}
    stats["wall_s"] = Stat.of([float(r["wall_s"]) for r in records])
    return RecipeSummary(name, tuple(int(r["seed"]) for r in records), stats)


def markdown_table(summaries: Sequence[RecipeSummary], keys: Sequence[str]) -> str:
    """``| recipe | seeds | key ... | wall time (s) |`` with ``mean ± std`` cells; the
    best mean per metric in bold."""
    header = ["recipe", "seeds", *keys, "train + test wall (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {k: max(s.stats[k].mean for s in summaries) for k in keys}
    for summary in summaries:
        cells = [summary.name, ",".join(map(str, summary.seeds))]
        for key in keys:
            text = summary.stats[key].format()
            cells.append(f"**{text}**" if summary.stats[key].mean == best[key] else text)
        cells.append(summary.stats["wall_s"].format(0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(
    summaries: Sequence[RecipeSummary], keys: Sequence[str], out_path: Path, title: str = ""
) -> Path:
    """Grouped bars (one group per metric, one bar per recipe), error bars = std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [k for k in CHART_KEYS if k in keys] or list(keys)[:4]
    width = 0.8 / max(len(summaries), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(shown) + 0.4 * len(summaries)), 4.8))
    x = np.arange(len(shown))
    palette = plt.get_cmap("tab10" if len(summaries) <= 10 else "tab20")
    for index, summary in enumerate(summaries):
        means = [summary.stats[k].mean for k in shown]
        stds = [summary.stats[k].std for k in shown]
        ax.bar(
            x + (index - (len(summaries) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            color=palette(index % palette.N),
            label=f"{summary.name} (n={len(summary.seeds)})",
        )
    ax.set_xticks(x, shown)
    ax.set_ylabel("test score (%), mean ± std over seeds")
    ax.set_title(title or "comparison")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
