"""Smooth-AP speed and peak memory vs batch size (forward + backward, CPU).

Compares, side by side and interleaved (medians over repeats):
- ``ours``: ``retrievalkit.losses.SmoothAPLoss`` from embeddings ``[B, D]`` (the
  default: the query is excluded from its own retrieval set);
- ``ours_self``: the same with ``include_self=True``, the variant of the original
  code and of PML (the query counts as its own positive): the one timed against PML;
- ``floor``: the least any loss on ``S = x x^T`` does, the forward matmul and one
  backward matmul (``retrievalkit.losses.bench.GramFloor``);
- ``autograd``: autograd's ``(x @ x.T).sum()`` forward + backward (three matmuls;
  the floor used before, kept as a labelled column);
- ``pml``: ``pytorch_metric_learning.losses.SmoothAPLoss`` (B^3 memory, so only
  for ``B <= --pml-max``).

Peak memory is the growth of the resident set during one forward + backward
(peak ``VmHWM`` minus ``VmRSS`` before, after resetting the high-water mark via
``/proc/self/clear_refs``; Linux only), in a fresh subprocess per (method, B).
(``ru_maxrss`` is not used: Linux carries it over from the parent across exec.)

    .venv/bin/python benchmarks/smooth_ap_scaling.py --sizes 256 512 1024 2048 4096
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from peak_memory import median_probe, print_peak_growth

from retrievalkit.run.provenance import stdout_to_results

METHODS = ("ours", "ours_self", "floor", "autograd", "pml")


def make_inputs(batch: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalized ``[B, D]`` embeddings and sorted labels, 4 samples per class."""
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(batch, dim, generator=g), dim=1)
    return emb, torch.arange(batch) // 4


def make_step(method: str, emb: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of ``method`` from a fresh leaf copy of ``emb``."""
    if method == "floor":
        from retrievalkit.losses.bench import GramFloor

        def loss_fn(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return GramFloor.apply(x)

    elif method == "autograd":

        def loss_fn(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
            return (x @ x.T).sum()

    elif method in ("ours", "ours_self"):
        from retrievalkit.losses import SmoothAPLoss

        loss_fn = SmoothAPLoss(temperature=0.01, include_self=method == "ours_self")
    elif method == "pml":
        from pytorch_metric_learning.losses import SmoothAPLoss as PMLSmoothAPLoss

        loss_fn = PMLSmoothAPLoss(temperature=0.01)
    else:
        raise ValueError(f"unknown method {method!r}, expected one of {METHODS}")

    def step() -> None:
        x = emb.clone().requires_grad_()
        loss_fn(x, labels).backward()

    return step


def peak_memory_mb(method: str, batch: int, dim: int, threads: int, runs: int = 3) -> float:
    """Peak RSS growth (MiB) of one forward + backward: median of fresh subprocesses."""
    cmd = [sys.executable, __file__, "--memory-probe", method, str(batch)]
    cmd += ["--dim", str(dim), "--threads", str(threads)]
    return median_probe(cmd, runs)


def memory_probe(method: str, batch: int, dim: int) -> None:
    """Print the peak RSS growth (MiB) of one step (run inside the subprocess)."""
    emb, labels = make_inputs(batch, dim)
    print_peak_growth(make_step(method, emb, labels))


def time_methods(
    batch: int, dim: int, methods: list[str], repeats: int, min_seconds: float = 0.0
) -> dict[str, list[float]]:
    """Interleaved timings (seconds) of one step per method, after one warm-up each.

    Runs at least ``repeats`` rounds, and more until all steps together took
    ``min_seconds`` (fast steps get enough samples for a stable median)."""
    emb, labels = make_inputs(batch, dim)
    steps = {m: make_step(m, emb, labels) for m in methods}
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {m: [] for m in methods}
    rounds, elapsed = 0, 0.0
    while rounds < repeats or elapsed < min_seconds:
        for method, step in steps.items():
            start = time.perf_counter()
            step()
            times[method].append(time.perf_counter() - start)
            elapsed += times[method][-1]
        rounds += 1
    return times


def table_row(batch: int, times: dict[str, list[float]], mem: dict[str, float]) -> str:
    med = {m: statistics.median(t) * 1000 for m, t in times.items()}
    pml = med.get("pml")
    cells = [
        str(batch),
        f"{med['ours']:.1f}",
        f"{med['ours_self']:.1f}",
        f"{med['floor']:.1f}",
        f"**{med['ours'] / med['floor']:.2f}**",
        f"{med['ours_self'] / med['floor']:.2f}",
        "-" if pml is None else f"{pml:.0f}",
        "-" if pml is None else f"{pml / med['ours_self']:.0f}",
        f"{med['autograd']:.1f}",
        f"{med['ours'] / med['autograd']:.2f}",
        f"{mem['ours']:.0f}",
        f"{mem['floor']:.0f}",
        "-" if "pml" not in mem else f"{mem['pml']:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| B | ours ms | ours include_self ms | floor ms | **ours / floor** | include_self / floor "
    "| PML ms | PML / ours include_self | autograd floor ms | ours / autograd floor "
    "| ours peak MiB | floor peak MiB | PML peak MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--min-seconds", type=float, default=2.0, help="time each fast size for at least this"
    )
    parser.add_argument("--pml-repeats", type=int, default=3)
    parser.add_argument("--pml-max", type=int, default=512, help="largest B run with PML")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-probe", nargs=2, metavar=("METHOD", "B"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/bench/smooth_ap_scaling.md)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]), args.dim)
        return
    with stdout_to_results(args.out or "results/bench/smooth_ap_scaling.md"):
        print(f"torch {torch.__version__}, threads {args.threads}, D={args.dim}, 4 samples/class")
        print(f"command: python benchmarks/smooth_ap_scaling.py {' '.join(sys.argv[1:])}")
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
        print(HEADER)
        for batch in args.sizes:
            methods = ["ours", "ours_self", "floor", "autograd"]
            times = time_methods(batch, args.dim, methods, args.repeats, args.min_seconds)
            if batch <= args.pml_max:
                pml = time_methods(batch, args.dim, ["pml", *methods], args.pml_repeats)
                times = {m: times.get(m, []) + pml[m] for m in pml}
            mem = {m: peak_memory_mb(m, batch, args.dim, args.threads) for m in ("ours", "floor")}
            if batch <= args.pml_max:
                mem["pml"] = peak_memory_mb("pml", batch, args.dim, args.threads)
            print(table_row(batch, times, mem), flush=True)
        print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
