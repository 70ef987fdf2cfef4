"""Loss speed: retrievalkit's losses against the similarity-matmul floor and, when
installed, pytorch-metric-learning (PML) configured to the same definitions.

Used by ``retrievalkit bench`` and by ``benchmarks/losses.py`` (which adds peak
memory and the full sizes; results in BENCHMARKS.md). Runs are interleaved
(floor, ours, PML, floor, ...) and medians reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

LOSS_NAMES = (
    "multi_similarity",
    "contrastive",
    "triplet_batch_hard",
    "lifted_generalized",
    "lifted",
    "binomial",
    "smooth_ap",
)

D = 512
PER_CLASS = 4
PML_SMOOTH_AP_MAX_B = 512  # PML builds B x B x B tensors


def make_batch(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, D, generator=g), dim=1)
    labels = torch.arange(b) // PER_CLASS
    return x, labels


def ours(name: str) -> Callable:
    from retrievalkit import losses as L

    table = {
        "multi_similarity": lambda: L.MultiSimilarityLoss(),
        "contrastive": lambda: L.ContrastiveLoss(0.5),
        "triplet_batch_hard": lambda: L.TripletMarginLoss(0.1, "batch_hard"),
        "lifted_generalized": lambda: L.GeneralizedLiftedStructureLoss(1.0),
        "lifted": lambda: L.LiftedStructureLoss(1.0),
        "binomial": lambda: L.BinomialDevianceLoss(),
        "smooth_ap": lambda: L.SmoothAPLoss(0.01, include_self=True),
    }
    loss = table[name]()
    return lambda x, y: loss(x, y)


def pml(name: str) -> Callable | None:
    try:
        from pytorch_metric_learning import distances, losses, miners, reducers
    except ImportError:
        return None
    dot = distances.DotProductSimilarity(normalize_embeddings=False)
    mean = reducers.MeanReducer()
    if name == "multi_similarity":
        loss, miner = (
            losses.MultiSimilarityLoss(distance=dot),
            miners.MultiSimilarityMiner(0.1, distance=dot),
        )
        return lambda x, y: loss(x, y, miner(x, y))
    if name == "contrastive":
        loss = losses.ContrastiveLoss(pos_margin=1, neg_margin=0.5, distance=dot, reducer=mean)
        return lambda x, y: loss(x, y)
    if name == "triplet_batch_hard":
        loss = losses.TripletMarginLoss(0.1, distance=dot, reducer=mean)
        miner = miners.BatchHardMiner(distance=dot)
        return lambda x, y: loss(x, y, miner(x, y))
    if name == "lifted_generalized":
        loss = losses.GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=1, distance=dot)
        return lambda x, y: loss(x, y)
    if name == "smooth_ap":
        loss = losses.SmoothAPLoss(temperature=0.01)
        return lambda x, y: loss(x, y)
    return None  # no PML loss with the same definition (lifted original, binomial)


def floor(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ x.T).sum()


def fwd_bwd(fn: Callable, x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.clone().requires_grad_()
    start = time.perf_counter()
    fn(x, y).backward()
    return time.perf_counter() - start


def time_case(name: str, b: int, reps: int) -> dict:
    x, y = make_batch(b)
    ours_fn = ours(name)
    pml_fn = pml(name)
    if name == "smooth_ap" and b > PML_SMOOTH_AP_MAX_B:
        pml_fn = None
    for fn in (floor, ours_fn, pml_fn):  # warm-up
        if fn is not None:
            fwd_bwd(fn, x, y)
    times: dict[str, list[float]] = {"floor": [], "ours": [], "pml": []}
    for _ in range(reps):
        times["floor"].append(fwd_bwd(floor, x, y))
        times["ours"].append(fwd_bwd(ours_fn, x, y))
        if pml_fn is not None:
            times["pml"].append(fwd_bwd(pml_fn, x, y))
    return {k: statistics.median(v) if v else None for k, v in times.items()}


def fmt(value: float | None, unit: str = "") -> str:
    """A table cell: ``-`` for missing; seconds below 0.1 s in ms; other numbers rounded."""
    if value is None:
        return "-"
    if unit == " s":
        return f"{value * 1000:.2f} ms" if value < 0.1 else f"{value:.3f} s"
    return f"{value:.0f}{unit}"


def table_header(memory: bool = False) -> str:
    """The markdown header (and rule) of :func:`benchmark_rows`' lines."""
    header = "| loss | B | floor (s) | ours (s) | PML (s) | ours / floor | PML / ours |"
    if memory:
        header += " ours peak MiB | PML peak MiB | floor peak MiB |"
    return header + "\n|" + "---|" * (header.count("|") - 1)


def benchmark_rows(
    sizes: Iterable[int],
    names: Iterable[str],
    reps: int,
    memory: Callable[[str, int, str], float | None] | None = None,
) -> Iterable[tuple[dict[str, Any], str]]:
    """For each size and loss: ``(raw result, markdown line)``; ``memory(name, B, impl)``
    gives peak MiB per implementation when measured."""
    names = list(names)
    for b in sizes:
        for name in names:
            t = time_case(name, b, reps)
            row: dict[str, Any] = {"loss": name, "B": b, **t}
            pml_ratio = "-" if t["pml"] is None else f"{t['pml'] / t['ours']:.1f}"
            line = (
                f"| {name} | {b} | {fmt(t['floor'], ' s')} | {fmt(t['ours'], ' s')} | "
                f"{fmt(t['pml'], ' s')} | {t['ours'] / t['floor']:.2f} | {pml_ratio} |"
            )
            if memory is not None:
                mem = {impl: memory(name, b, impl) for impl in ("ours", "pml", "floor")}
                row.update({f"{k}_peak_mib": v for k, v in mem.items()})
                line += f" {fmt(mem['ours'])} | {fmt(mem['pml'])} | {fmt(mem['floor'])} |"
            yield row, line
