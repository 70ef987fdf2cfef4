"""Loss speed: retrievalkit's losses against the matmul floor and a reference
implementation (pytorch-metric-learning (PML) configured to the same definitions
for the metric losses, vsepp's own ``ContrastiveLoss`` for VSE++/VSE0).
(Over 300 lines on purpose: the two floors, the cases and their timing loop define one measurement and change together.)

The floor is the least work any loss on the similarity matrix must do:
- metric losses, ``S = x x^T`` ``[B, B]``: the forward matmul and ONE backward
  matmul, ``dL/dx = (G + G^T) x`` (:class:`GramFloor`);
- cross-modal losses, ``S = img txt^T``: the forward matmul and the two backward
  matmuls ``G txt`` and ``G^T img`` (:class:`CrossFloor`).
The floors are not losses: they time exactly those matmuls (with ``S`` standing in
for the symmetric ``G + G^T``, resp. ``G``) and nothing else. The older floor,
autograd's ``(x @ x.T).sum().backward()``, runs three matmuls for ``x x^T`` (one
forward, one per operand backward); it is kept as a labelled extra column
("autograd floor"). For ``img txt^T`` autograd also runs three, which are all needed.

Used by ``retrievalkit bench`` and by ``benchmarks/losses.py`` (which adds peak
memory and the full sizes; results in BENCHMARKS.md). Runs are interleaved
(floor, autograd floor, ours, reference, floor, ...) and medians reported.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.bench_names import CROSS_MODAL_LOSSES, LOSS_NAMES, METRIC_LOSSES

IMPLS = ("floor", "autograd_floor", "ours", "ref")

D = 512
PER_CLASS = 4
PML_SMOOTH_AP_MAX_B = 512  # PML builds B x B x B tensors (2.7 GiB at B = 512)


class GramFloor(torch.autograd.Function):
    """``x [B, D]``: forward ``S = x @ x.T``, backward ``S @ x`` (S stands in for the
    symmetric ``G + G^T``): exactly the two matmuls of any loss on ``x x^T``.
    Returns a scalar zero connected to ``x``; the "gradient" is for timing only."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        s = x @ x.T
        ctx.save_for_backward(x, s)
        return x.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, s = ctx.saved_tensors
        return torch.mm(s, x).mul_(grad)


class CrossFloor(torch.autograd.Function):
    """``img [B, D], txt [M, D]``: forward ``S = img @ txt.T``, backward ``S @ txt`` and
    ``S.T @ img``: the three matmuls of any loss on ``img txt^T`` (timing only)."""

    @staticmethod
    def forward(ctx: Any, img: Tensor, txt: Tensor) -> Tensor:  # type: ignore[override]
        s = img @ txt.T
        ctx.save_for_backward(img, txt, s)
        return img.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        img, txt, s = ctx.saved_tensors
        return torch.mm(s, txt).mul_(grad), torch.mm(s.T, img).mul_(grad)


@dataclass(frozen=True)
class Case:
    """One (loss, B): the differentiated ``inputs`` (fresh leaf copies per step), the
    non-differentiated ``extra`` arguments, and a callable per implementation
    (``None`` where there is none)."""

    inputs: tuple[Tensor, ...]
    extra: tuple[Any, ...]
    impls: dict[str, Callable | None]

    def step(self, impl: str) -> Callable[[], None] | None:
        """One forward + backward of ``impl`` (None when it does not exist)."""
        fn = self.impls[impl]
        if fn is None:
            return None

        def run() -> None:
            leaves = [t.clone().requires_grad_() for t in self.inputs]
            fn(*leaves, *self.extra).backward()

        return run


def make_batch(b: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Unit ``x [B, D]`` and labels ``[B]`` with ``PER_CLASS`` samples per class."""
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, D, generator=g), dim=1)
    return x, torch.arange(b) // PER_CLASS


# Noise of a caption around its image in :func:`make_pairs`: a matched similarity of
# about 0.32 against 0.12-0.16 for the largest other one, so that VSE's hinges are
# active as in training (MH: 52% of the queries at B = 128, 86% at 4096; SH: 2.6 and 98
# active terms per query). With 0.5 (before 2026-12-03) the pairs were 0.89 apart and
# every hinge was 0: the loss was 0 and its gradient empty at every B.
PAIR_NOISE = 3.0


def make_pairs(b: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Unit ``img [B, D]`` and matched ``txt [B, D]`` (image + :data:`PAIR_NOISE` times
    a unit noise, renormalized)."""
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(b, D, generator=g), dim=1)
    noise = F.normalize(torch.randn(b, D, generator=g), dim=1)
    return img, F.normalize(img + PAIR_NOISE * noise, dim=1)


def ours(name: str) -> Callable:
    from retrievalkit import losses as L

    table = {
        "multi_similarity": lambda: L.MultiSimilarityLoss(),
        "contrastive": lambda: L.ContrastiveLoss(0.5),
        "triplet_batch_hard": lambda: L.TripletMarginLoss(0.1, "batch_hard"),
        "lifted_generalized": lambda: L.GeneralizedLiftedStructureLoss(1.0),
        "lifted": lambda: L.LiftedStructureLoss(1.0),
        "binomial": lambda: L.BinomialDevianceLoss(),
        # PML's variant: the query counts as its own positive (see smooth_ap.py)
        "smooth_ap": lambda: L.SmoothAPLoss(0.01, include_self=True),
        "vse_mh": lambda: L.VSELoss(0.2, max_violation=True),
        "vse_sh": lambda: L.VSELoss(0.2, max_violation=False),
        "clip": lambda: L.ClipLoss(0.07),
    }
    return table[name]()


def reference(name: str, b: int) -> Callable | None:
    """The same loss in the library users run today (None when there is none here)."""
    if name == "clip":
        return None  # no reference library here (open_clip is not a dependency)
    if name in CROSS_MODAL_LOSSES:
        from retrievalkit.losses.vsepp_reference import vsepp_contrastive

        max_violation = name == "vse_mh"
        return lambda img, txt: vsepp_contrastive(img, txt, 0.2, max_violation)
    if name == "smooth_ap" and b > PML_SMOOTH_AP_MAX_B:
        return None
    return pml(name)


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


def make_case(name: str, b: int) -> Case:
    """Inputs and implementations of loss ``name`` at batch size ``b``."""
    if name in CROSS_MODAL_LOSSES:
        impls = {
            "floor": CrossFloor.apply,
            "autograd_floor": lambda img, txt: (img @ txt.T).sum(),
        }
        inputs, extra = make_pairs(b), ()
    else:
        impls = {
            "floor": lambda x, _: GramFloor.apply(x),
            "autograd_floor": lambda x, _: (x @ x.T).sum(),
        }
        x, labels = make_batch(b)
        inputs, extra = (x,), (labels,)
        if name not in METRIC_LOSSES:
            raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
    impls.update(ours=ours(name), ref=reference(name, b))
    return Case(inputs, extra, impls)


# A timed sample lasts at least this long: a step shorter than a scheduler time
# slice (milliseconds at B = 128, 256) is repeated inside one sample, so one
# descheduling cannot decide a ratio.
MIN_SAMPLE_SECONDS = 0.1


def repeats_for(step: Callable[[], None], min_seconds: float) -> int:
    """How many back-to-back steps make one sample of at least ``min_seconds``
    (from the fastest of three timed steps after the warm-up)."""
    once = float("inf")
    for _ in range(3 if min_seconds > 0 else 0):
        start = time.perf_counter()
        step()
        once = min(once, time.perf_counter() - start)
        if once >= min_seconds:
            break
    return max(1, math.ceil(min_seconds / max(once, 1e-7))) if min_seconds > 0 else 1


def time_case(
    name: str, b: int, reps: int, min_seconds: float = MIN_SAMPLE_SECONDS
) -> dict[str, Any]:
    """Seconds per forward + backward of each implementation, interleaved rounds.

    Returns ``{impl: median, impl + "_best": minimum, impl + "_cpu": median CPU
    time of the calling thread, impl + "_repeats": steps per sample}`` (None where
    an implementation does not exist). Each sample times ``repeats`` steps back to
    back (see :data:`MIN_SAMPLE_SECONDS`). With one torch thread all the work runs
    on the calling thread, so its CPU time is the work done, whatever else the
    machine runs (wall time includes the time the process waits for a core).
    """
    case = make_case(name, b)
    steps = {impl: step for impl in IMPLS if (step := case.step(impl)) is not None}
    for step in steps.values():  # warm-up
        step()
    repeats = {impl: repeats_for(step, min_seconds) for impl, step in steps.items()}
    wall: dict[str, list[float]] = {impl: [] for impl in steps}
    cpu: dict[str, list[float]] = {impl: [] for impl in steps}
    for _ in range(reps):
        for impl, step in steps.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(repeats[impl]):
                step()
            cpu[impl].append((time.thread_time() - start_cpu) / repeats[impl])
            wall[impl].append((time.perf_counter() - start) / repeats[impl])
    result: dict[str, Any] = {}
    for impl in IMPLS:
        sample = wall.get(impl)
        result[impl] = statistics.median(sample) if sample else None
        result[impl + "_best"] = min(sample) if sample else None
        result[impl + "_cpu"] = statistics.median(cpu[impl]) if sample else None
        result[impl + "_repeats"] = repeats.get(impl)
    return result


def fmt(value: float | None, unit: str = "") -> str:
    """A table cell: ``-`` for missing; seconds below 0.1 s in ms; other numbers rounded."""
    if value is None:
        return "-"
    if unit == " s":
        return f"{value * 1000:.2f} ms" if value < 0.1 else f"{value:.3f} s"
    return f"{value:.0f}{unit}"


def table_header(memory: bool = False, cpu: bool = False) -> str:
    """The markdown header (and rule) of :func:`benchmark_rows`' lines."""
    header = (
        "| loss | B | steps per sample (floor/ours/ref) | floor | ours | reference "
        "| **ours / floor** (median) | ours / floor (best) | ref / ours (median) "
        "| ours / autograd floor |"
    )
    if cpu:
        header += " ours / floor (CPU time) | ref / ours (CPU time) |"
    if memory:
        header += " ours peak MiB | ref peak MiB | floor peak MiB |"
    return header + "\n|" + "---|" * (header.count("|") - 1)


def _ratio(num: float | None, den: float | None, digits: int) -> str:
    return "-" if num is None or den is None else f"{num / den:.{digits}f}"


def benchmark_rows(
    sizes: Iterable[int],
    names: Iterable[str],
    reps: int,
    memory: Callable[[str, int, str], float | None] | None = None,
    min_seconds: float = MIN_SAMPLE_SECONDS,
    cpu: bool = False,
) -> Iterable[tuple[dict[str, Any], str]]:
    """For each size and loss: ``(raw result, markdown line)``; ``memory(name, B, impl)``
    gives peak MiB per implementation when measured (None: not measured); ``cpu``
    adds the CPU-time ratios (meaningful with one torch thread)."""
    names = list(names)
    for b in sizes:
        for name in names:
            t = time_case(name, b, reps, min_seconds)
            row: dict[str, Any] = {"loss": name, "B": b, **t}
            counts = "/".join(str(t[f"{i}_repeats"] or "-") for i in ("floor", "ours", "ref"))
            line = (
                f"| {name} | {b} | {counts} | {fmt(t['floor'], ' s')} | {fmt(t['ours'], ' s')} | "
                f"{fmt(t['ref'], ' s')} | **{_ratio(t['ours'], t['floor'], 2)}** | "
                f"{_ratio(t['ours_best'], t['floor_best'], 2)} | "
                f"{_ratio(t['ref'], t['ours'], 2)} | "
                f"{_ratio(t['ours'], t['autograd_floor'], 2)} |"
            )
            if cpu:
                line += (
                    f" {_ratio(t['ours_cpu'], t['floor_cpu'], 2)} |"
                    f" {_ratio(t['ref_cpu'], t['ours_cpu'], 2)} |"
                )
            if memory is not None:
                mem = {impl: memory(name, b, impl) for impl in ("ours", "ref", "floor")}
                row.update({f"{k}_peak_mib": v for k, v in mem.items()})
                line += f" {fmt(mem['ours'])} | {fmt(mem['ref'])} | {fmt(mem['floor'])} |"
            yield row, line
