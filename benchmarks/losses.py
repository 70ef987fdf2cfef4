"""Loss speed and memory: retrievalkit vs a reference implementation vs the matmul floor.

For each batch size B (D=512, 4 samples per class) and each loss, the forward +
backward time is measured for ours, for the reference (PML's equivalent with the
same definition, see tests/losses/test_against_pml.py; vsepp's ContrastiveLoss
for VSE++/VSE0) and for the floor no loss can beat: the forward matmul plus the
backward matmuls it needs (one for ``x x^T``, two for ``img txt^T``; see
``retrievalkit.losses.bench``), next to autograd's ``(x @ x.T).sum().backward()`` (three
matmuls, labelled "autograd floor"). Runs are interleaved (floor, autograd floor,
ours, reference, floor, ...) and the median of ``--reps`` is reported, as ratios,
with the load average before and after. Peak memory is the increase of the
process's peak RSS during one fwd+bwd, measured in a fresh subprocess per case
(``--memory``; PML's Smooth-AP only up to B = 512, it needs B^3 memory).

    python benchmarks/losses.py                 # full table (B = 256, 1024, 4096)
    python benchmarks/losses.py --quick         # seconds: B = 128, 256, no memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import torch
from peak_memory import print_peak_growth

import retrievalkit.losses.bench as bench
from retrievalkit.losses.bench import LOSS_NAMES, benchmark_rows, table_header


def peak_rss_mib(name: str, b: int, impl: str) -> float | None:
    """Peak RSS growth (MiB) of one fwd+bwd, in a fresh interpreter (``--probe``).

    The kernel's peak counter is reset after the inputs exist, so import-time peaks
    do not hide the loss's own allocations. ``None`` when the implementation does
    not exist or the probe fails (e.g. PML's Smooth-AP running out of memory).
    """
    cmd = [sys.executable, __file__, "--probe", name, str(b), impl]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    text = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "null"
    return None if text == "null" else float(text)


def probe(name: str, b: int, impl: str) -> None:
    """Inside the subprocess: print the peak growth of one step (or ``null``)."""
    step = bench.make_case(name, b).step(impl)
    if step is None:
        print("null")
        return
    print_peak_growth(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--losses", nargs="*", default=None)
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per case")
    parser.add_argument("--json", type=str, default=None, help="write raw results here")
    parser.add_argument("--probe", nargs=3, metavar=("LOSS", "B", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], int(args.probe[1]), args.probe[2])
        return
    sizes = args.sizes or ([128, 256] if args.quick else [256, 1024, 4096])
    reps = args.reps or (3 if args.quick else 5)
    names = args.losses or list(LOSS_NAMES)
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"# command: python benchmarks/losses.py {' '.join(sys.argv[1:])}")
    print(f"# load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(table_header(args.memory))
    rows = []
    for row, line in benchmark_rows(sizes, names, reps, peak_rss_mib if args.memory else None):
        print(line, flush=True)
        rows.append(row)
    print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
