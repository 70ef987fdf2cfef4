"""Loss speed and memory: retrievalkit vs pytorch-metric-learning vs the matmul floor.

For each batch size B (D=512, 4 samples per class) and each loss, the forward +
backward time is measured for ours, for PML's equivalent (same definition, see
tests/losses/test_against_pml.py) and for the floor no similarity loss can beat:
``(x @ x.T).sum().backward()``. Runs are interleaved (floor, ours, PML, floor,
...) and the median of ``--reps`` is reported, as ratios. Peak memory is the
increase of the process's peak RSS during one fwd+bwd, measured in a fresh
subprocess per case (``--memory``).

    python benchmarks/losses.py                 # full table (B = 256, 1024, 4096)
    python benchmarks/losses.py --quick         # seconds: B = 128, 256, no memory
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def peak_rss_mib(name: str, b: int, impl: str) -> float | None:
    """Peak RSS growth (MiB) of one fwd+bwd, in a fresh interpreter.

    The kernel's peak counter is reset (``/proc/self/clear_refs``) after the inputs
    exist, so import-time peaks do not hide the loss's own allocations.
    """
    code = f"""
import re, sys
sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
import losses as bench
def status(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
x, y = bench.make_batch({b})
fn = bench.floor if {impl!r} == 'floor' else (bench.ours if {impl!r} == 'ours' else bench.pml)({name!r})
if fn is None: print('null'); sys.exit()
x.requires_grad_()
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
fn(x, y).backward()
print((status("VmHWM") - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    text = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "null"
    return None if text == "null" else float(text)


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}" if unit == " s" else f"{value:.0f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--losses", nargs="*", default=None)
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per case")
    parser.add_argument("--json", type=str, default=None, help="write raw results here")
    args = parser.parse_args()
    sizes = args.sizes or ([128, 256] if args.quick else [256, 1024, 4096])
    reps = args.reps or (3 if args.quick else 5)
    names = args.losses or [
        "multi_similarity",
        "contrastive",
        "triplet_batch_hard",
        "lifted_generalized",
        "lifted",
        "binomial",
        "smooth_ap",
    ]
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"# command: python benchmarks/losses.py {' '.join(sys.argv[1:])}")
    header = "| loss | B | floor (s) | ours (s) | PML (s) | ours / floor | PML / ours |"
    if args.memory:
        header += " ours peak MiB | PML peak MiB | floor peak MiB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rows = []
    for b in sizes:
        for name in names:
            t = time_case(name, b, reps)
            row = {"loss": name, "B": b, **t}
            pml_ratio = "-" if t["pml"] is None else f"{t['pml'] / t['ours']:.1f}"
            line = (
                f"| {name} | {b} | {fmt(t['floor'], ' s')} | {fmt(t['ours'], ' s')} | "
                f"{fmt(t['pml'], ' s')} | {t['ours'] / t['floor']:.2f} | {pml_ratio} |"
            )
            if args.memory:
                mem = {impl: peak_rss_mib(name, b, impl) for impl in ("ours", "pml", "floor")}
                row.update({f"{k}_peak_mib": v for k, v in mem.items()})
                line += f" {fmt(mem['ours'])} | {fmt(mem['pml'])} | {fmt(mem['floor'])} |"
            print(line, flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
