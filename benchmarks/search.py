"""Search speed, recall and memory of the index backends (CPU).

Side by side and interleaved in one process (each round runs every backend once,
medians over ``--rounds`` after one warm-up search each):
- ``exact``: ``retrievalkit.index.ExactIndex`` (blockwise torch matmul + top-k);
- ``faiss flat``: ``FaissIndex(kind="flat")``, i.e. FAISS ``IndexFlatIP`` (exact);
- ``faiss ivf`` / ``faiss hnsw``: the approximate backends, with their recall@k
  against the exact index's results on the same queries (IVF is trained on the
  first ``max(65,536, 64 * nlist)`` items, the first add).

Data: ``--items`` unit vectors in ``--clusters`` clusters (each item the normalized
``centre + noise * u``, ``u`` a random unit vector; default noise 1.0, i.e. an item
has cosine ~0.7 with its centre), and ``--queries`` queries drawn the same way.
Memory: ``nbytes()`` of each index (its vectors and search structures, not keys)
per item, and the process's resident-set growth while building it, per item.

    python benchmarks/search.py                      # 1,000,000 x 512, 1,000 queries, top-10
    python benchmarks/search.py --backends exact flat
    python benchmarks/search.py --quick              # 20,000 items, 200 queries (seconds)
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from peak_memory import status_kib
from tqdm import tqdm

from retrievalkit.index import ExactIndex, FaissIndex, overlap_recall
from retrievalkit.run.provenance import stdout_to_results

BACKENDS = ("exact", "flat", "ivf", "hnsw")
CHUNK = 65536  # items generated / added to FAISS at a time


def make_vectors(n: int, centres: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """``[n, D]`` unit vectors, each ``normalize(centre + noise * u)`` (``u`` unit, random)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, centres.shape[1])
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        which = torch.randint(len(centres), (stop - start,), generator=g)
        u = F.normalize(torch.randn(stop - start, centres.shape[1], generator=g), dim=1)
        out[start:stop] = F.normalize(centres[which] + noise * u, dim=1)
    return out


def build(name: str, vectors: torch.Tensor, args: argparse.Namespace) -> tuple[ExactIndex, dict]:
    """The index ``name`` over ``vectors``, with its build seconds and RSS growth (bytes)."""
    keys = [str(i) for i in range(len(vectors))]
    rss = status_kib("VmRSS")
    start = time.perf_counter()
    if name == "exact":
        index = ExactIndex(vectors.shape[1])
        index.add(vectors, keys)
    else:
        options = {"ivf": {"nlist": args.nlist, "nprobe": args.nprobe}}.get(name, {})
        if name == "hnsw":
            options = {"hnsw_m": args.hnsw_m, "ef_search": args.ef_search}
        index = FaissIndex(vectors.shape[1], kind=name, **options)
        # IVF is trained on the first add: at least 64 items per list
        first = max(CHUNK, 64 * args.nlist) if name == "ivf" else CHUNK
        bounds = [0, *range(first, len(vectors), CHUNK), len(vectors)]
        bar = tqdm(total=len(vectors), desc=f"build {name}", unit="item", leave=False)
        for lo, hi in itertools.pairwise(bounds):
            index.add(vectors[lo:hi], keys[lo:hi])
            bar.update(hi - lo)
        bar.close()
    seconds = time.perf_counter() - start
    growth = (status_kib("VmRSS") - rss) * 1024
    return index, {"build_s": seconds, "rss_bytes": growth, "nbytes": index.nbytes()}


def time_rounds(
    calls: dict[str, Callable[[], object]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Interleaved timings (seconds) of every call, ``rounds`` times, after a warm-up;
    and each call's last result."""
    results = {name: call() for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in tqdm(range(rounds), desc="rounds", leave=False):
        for name, call in calls.items():
            start = time.perf_counter()
            results[name] = call()
            times[name].append(time.perf_counter() - start)
    return times, results


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=None, help="default items / 100")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="20,000 items, 200 queries")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/bench/search.md; with --quick: printed only)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.queries, args.nlist = 20_000, 200, 64
    with stdout_to_results(args.out or (None if args.quick else "results/bench/search.md")):
        torch.set_num_threads(args.threads)
        import faiss

        faiss.omp_set_num_threads(args.threads)
        clusters = args.clusters or max(1, args.items // 100)
        print(
            f"command: python benchmarks/search.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        )
        print(
            f"torch {torch.__version__}, faiss {faiss.__version__}, threads {args.threads}; "
            f"{args.items:,} x {args.dim} float32 items in {clusters:,} clusters, "
            f"{args.queries:,} queries, top-{args.k}"
        )
        print(f"load average before: {loadavg()}")
        g = torch.Generator().manual_seed(0)
        centres = F.normalize(torch.randn(clusters, args.dim, generator=g), dim=1)
        items = make_vectors(args.items, centres, args.noise, seed=1)
        queries = make_vectors(args.queries, centres, args.noise, seed=2)
        indexes, facts = {}, {}
        for name in ("exact", *[b for b in args.backends if b != "exact"]):
            indexes[name], facts[name] = build(name, items, args)
            if name == "exact":
                del items  # the exact index holds the (normalized) copy used from here on
                items = indexes["exact"].vectors
            print(f"built {name}: {facts[name]['build_s']:.1f} s", flush=True)
        calls = {n: (lambda i=i: i.search(queries, args.k)) for n, i in indexes.items()}
        times, results = time_rounds(calls, args.rounds)
        truth = results["exact"]
        med = {n: statistics.median(t) for n, t in times.items()}
        print(f"load average after: {loadavg()}\n")
        print(
            f"| backend | settings | search s ({args.queries:,} queries) | ms / query | time / exact | time / faiss flat "
            "| recall@k vs exact | bytes / item (nbytes) | RSS growth / item | build s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        settings = {
            "exact": "torch blockwise top-k",
            "flat": "IndexFlatIP",
            "ivf": f"IVFFlat nlist {args.nlist}, nprobe {args.nprobe}",
            "hnsw": f"HNSWFlat M {args.hnsw_m}, efSearch {args.ef_search}",
        }
        for name in indexes:
            recall = overlap_recall(results[name].indices, truth.indices)
            flat = f"{med[name] / med['flat']:.2f}" if "flat" in med else "-"
            print(
                f"| {name} | {settings[name]} | {med[name]:.2f} | {1000 * med[name] / args.queries:.2f} "
                f"| {med[name] / med['exact']:.2f} | {flat} | {recall:.3f} "
                f"| {facts[name]['nbytes'] / args.items:.0f} "
                f"| {facts[name]['rss_bytes'] / args.items:.0f} | {facts[name]['build_s']:.1f} |"
            )
        rounded = {n: [round(x, 2) for x in t] for n, t in times.items()}
        print(f"\nper-round seconds: {rounded}")


if __name__ == "__main__":
    main()
