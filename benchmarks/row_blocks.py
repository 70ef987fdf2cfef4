"""Why ``retrieval_ranks`` compares each chunk in whole-chunk passes (CPU).

One chunk of cross-modal scores ``S [rows, M]`` is counted both ways (image
queries: entries above the row's threshold; caption queries: entries above the
column's threshold, accumulated) with the two comparisons + two matrix-vector
products that ``retrieval_ranks`` runs, either over the whole chunk at once or in
row blocks of ``--blocks`` rows (the earlier code used 4 MiB blocks: 42 rows at
M = 25,000). Interleaved, medians over ``--rounds``; the load average is printed.

    python benchmarks/row_blocks.py                # rows 1342, M 25,000
    OMP_NUM_THREADS=1 python benchmarks/row_blocks.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from retrievalkit.run.provenance import stdout_to_results


def count_passes(
    s: torch.Tensor, best: torch.Tensor, own: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of ``s [r, M]`` above ``best [r]`` per row and above ``own [M]`` per column,
    ``block`` rows at a time (``s`` is overwritten, as in ``retrieval_ranks``)."""
    r, m = s.shape
    ones_m, ones_r = s.new_ones(m), s.new_ones(r)
    flags = torch.empty(min(block, r), m, dtype=s.dtype)
    rows, cols = s.new_empty(r), s.new_zeros(m)
    for a in range(0, r, block):
        part = s[a : a + block]
        f = torch.gt(part, best[a : a + block, None], out=flags[: part.shape[0]])
        rows[a : a + block] = torch.mv(f, ones_m)
        part.gt_(own[None, :])
        cols += torch.mv(part.T, ones_r[a : a + block])
    return rows, cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1342)
    parser.add_argument("--captions", type=int, default=25_000)
    parser.add_argument("--blocks", type=int, nargs="+", default=[42, 168, 671])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default: results/bench/row_blocks.md)"
    )
    args = parser.parse_args()
    with stdout_to_results(args.out or "results/bench/row_blocks.md"):
        g = torch.Generator().manual_seed(0)
        s0 = torch.randn(args.rows, args.captions, generator=g)
        best, own = torch.randn(args.rows, generator=g), torch.randn(args.captions, generator=g)
        s = s0.clone()
        sizes = [*args.blocks, args.rows]
        want = count_passes(s0.clone(), best, own, args.rows)
        times: dict[int, list[float]] = {b: [] for b in sizes}
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, S [{args.rows}, {args.captions}]"
        )
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for _ in range(args.rounds):
            for block in sizes:
                s.copy_(s0)
                start = time.perf_counter()
                got = count_passes(s, best, own, block)
                times[block].append(time.perf_counter() - start)
                assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True))
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
        whole = statistics.median(times[args.rows])
        print("| rows per pass | MiB per pass | passes | median ms | / whole chunk |")
        print("|---|---|---|---|---|")
        for block in sizes:
            med = statistics.median(times[block])
            mib = min(block, args.rows) * args.captions * 4 / 2**20
            passes = 4 * -(-args.rows // block)
            print(f"| {block} | {mib:.0f} | {passes} | {1000 * med:.0f} | {med / whole:.2f} |")


if __name__ == "__main__":
    main()
