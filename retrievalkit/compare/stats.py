"""The numbers of a comparison: a run's scores, and mean and spread over seeds.

Pure functions of the runs' records (one ``metrics.json`` per run, with ``test``
scores, optionally ``test_by_style`` and ``search_quality``, and ``wall_s``).
A record's scores are flat, named by group: the test split's metrics
(``recall@1``, ``rsum``, ...), each style's view (``t2i_r5 openmoji``; metric
learning: ``recall@1 openmoji``) and search hit@5 in % (``hit@5 fused literal``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
STYLE_METRICS = ("t2i_r5", "recall@1")  # a style view's column: the first one present
RANKINGS = ("image", "fused", "captions", "bm25")  # search/quality.py's rankings
GROUPS = {
    "test": "test split (%)",
    "style": "each style's view of the test split (%)",
    "search": "search, test part of the query set: hit@5 (%)",
}


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


def record_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """A run record's scores by key (see the module docstring), in table order."""
    test = record["test"]
    scores = {k: float(test[k]) for k in (*METRIC_KEYS, *CROSS_MODAL_KEYS) if k in test}
    for style, view in sorted(record.get("test_by_style", {}).items()):
        metric = next((m for m in STYLE_METRICS if m in view), None)
        if metric is not None:
            scores[f"{metric} {style}"] = float(view[metric])
    quality = record.get("search_quality", {})
    for ranking in RANKINGS:
        for kind, row in quality.get(ranking, {}).items():
            scores[f"hit@5 {ranking} {kind}"] = 100 * float(row["hit_rate"])
    return scores


def group_of(key: str) -> str:
    """``test``, ``style`` or ``search``: the table a score key belongs to."""
    if key.startswith("hit@5 "):
        return "search"
    return "style" if " " in key else "test"


def metric_keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The score keys present in every record, in table order."""
    if not records:
        return []
    every = [record_scores(r) for r in records]
    present = set.intersection(*(set(s) for s in every))
    return [k for k in every[0] if k in present]


def summarize(
    name: str, records: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> RecipeSummary:
    """Mean and spread of each of ``keys`` and of ``wall_s`` (when every record has
    one) over seeds.

    Args:
        records: one per seed: ``{"seed": int, "wall_s": float, "test": {key: float}}``.
    """
    scores = [record_scores(r) for r in records]
    stats = {key: Stat.of([s[key] for s in scores]) for key in keys}
    if all("wall_s" in r for r in records):
        stats["wall_s"] = Stat.of([float(r["wall_s"]) for r in records])
    return RecipeSummary(name, tuple(int(r["seed"]) for r in records), stats)
