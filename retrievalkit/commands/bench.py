"""``retrievalkit bench [--sizes 256 1024] [--losses ...] [--reps 3] [--json FILE]``.

Times each loss's forward + backward against the matmul floor (the forward matmul
plus the backward matmuls any loss on ``S`` needs) and against a reference
(pytorch-metric-learning when installed; vsepp's loss for VSE++/VSE0) on this
machine, interleaved; the full table with peak memory is ``benchmarks/losses.py``
(BENCHMARKS.md). Search speed: ``benchmarks/search.py``.
"""

from __future__ import annotations

import argparse
import json

from retrievalkit.bench_names import LOSS_NAMES
from retrievalkit.commands.options import add_progress_option
from retrievalkit.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="time the losses on this machine")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="batch sizes B")
    parser.add_argument("--losses", nargs="+", default=list(LOSS_NAMES), choices=LOSS_NAMES)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median)")
    parser.add_argument("--json", help="also write the raw timings here")
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from retrievalkit.losses.bench import benchmark_rows, table_header

    if any(b < 2 for b in args.sizes) or args.reps < 1:
        raise InputError(f"--sizes must be >= 2 and --reps >= 1, got {args.sizes} and {args.reps}")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, D = 512, 4 per class")
    print(table_header())
    rows = []
    for row, line in benchmark_rows(args.sizes, args.losses, args.reps):
        print(line, flush=True)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0
