"""Cross-modal evaluation: speed and peak memory of ``cross_modal_recall`` (CPU).

Side by side, interleaved (medians over rounds):
- ``ours``: ``retrievalkit.eval.cross_modal_recall`` (chunked counting, both directions);
- ``matmul``: the plain ``img @ txt.T`` similarity matrix alone, the floor any
  exact method pays (ours should stay within 1.3x of it);
- ``vsepp``: a faithful copy of vsepp's ``i2t``/``t2i`` loops (numpy, one argsort per
  query), the reference whose numbers ours must reproduce.

Data: ``N`` random unit image vectors, 5 captions per image, each caption the
normalized ``image + noise * u`` with ``u`` a random unit vector and ``noise``
``sqrt(D) / 4`` by default, so ranks are neither all 1 nor chance. Equality: every rank of ours equals vsepp's (float32, full size),
and again in float64 on ``--check64`` images (default: all; asserted exact).

Peak memory is the growth of the resident set during one call (``VmHWM`` after
minus ``VmRSS`` before, high-water mark reset via ``/proc/self/clear_refs``;
Linux only), median of fresh subprocesses per method.

    .venv/bin/python benchmarks/eval.py                 # 5,000 x 25,000, D=1024
    .venv/bin/python benchmarks/eval.py --quick         # small sizes, for `make bench`
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peak_memory import median_probe, print_peak_growth

from retrievalkit.eval.vsepp_reference import vsepp_i2t_t2i, vsepp_scores
from retrievalkit.run.provenance import stdout_to_results

METHODS = ("matmul", "ours", "vsepp")
CAPS_PER_IMAGE = 5  # vsepp's layout; ours reads the mapping


def make_inputs(
    n_img: int, dim: int, noise: float, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``img [N, D]``, ``txt [5N, D]`` (unit vectors) and ``txt_to_img [5N]``, grouped by image."""
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_img, dim, generator=g, dtype=torch.float64), dim=1)
    txt_to_img = torch.arange(n_img).repeat_interleave(CAPS_PER_IMAGE)
    direction = F.normalize(torch.randn(len(txt_to_img), dim, generator=g, dtype=img.dtype), dim=1)
    txt = img[txt_to_img] + noise * direction
    return img.to(dtype), F.normalize(txt, dim=1).to(dtype), txt_to_img


def make_call(
    method: str, img: torch.Tensor, txt: torch.Tensor, t2i: torch.Tensor, chunk: int | None
) -> Callable[[], object]:
    """A no-argument callable running ``method`` once on the given data."""
    if method == "matmul":
        return lambda: img @ txt.T
    if method == "ours":
        from retrievalkit.eval import cross_modal_recall

        return lambda: cross_modal_recall(img, txt, t2i, chunk_size=chunk)
    if method == "vsepp":
        images, captions = img[t2i].numpy(), txt.numpy()  # vsepp's input layout, made once
        return lambda: vsepp_i2t_t2i(images, captions)
    raise ValueError(f"unknown method {method!r}, expected one of {METHODS}")


def check_equal(n_img: int, dim: int, noise: float, dtype: torch.dtype, chunk: int | None) -> int:
    """Compare every rank and score of ours with vsepp's; return the number of ranks
    that differ (0 expected); raise when they do in float64."""
    from retrievalkit.eval import cross_modal_recall, retrieval_ranks

    img, txt, t2i = make_inputs(n_img, dim, noise, dtype)
    ref_i, ref_t = vsepp_i2t_t2i(img[t2i].numpy(), txt.numpy())  # numpy's own BLAS
    ours_i, ours_t = retrieval_ranks(img, txt, t2i, chunk)
    wrong = int((ours_i.numpy() != ref_i + 1).sum() + (ours_t.numpy() != ref_t + 1).sum())
    if wrong == 0:
        scores = cross_modal_recall(img, txt, t2i, chunk_size=chunk)
        ref = vsepp_scores(ref_i, "i2t") | vsepp_scores(ref_t, "t2i")
        bad = [key for key, value in ref.items() if scores[key] != value]
        if bad:
            raise AssertionError(f"same ranks but different scores for {bad}")
    elif dtype == torch.float64:
        raise AssertionError(f"{wrong} ranks differ from vsepp's in float64")
    else:
        print(
            f"float32 ranks differing from vsepp: {near_tie_report(img, txt, t2i, ours_i, ours_t, ref_i, ref_t)}"
        )
    return wrong


def near_tie_report(
    img: torch.Tensor,
    txt: torch.Tensor,
    t2i: torch.Tensor,
    ours_i: torch.Tensor,
    ours_t: torch.Tensor,
    ref_i: np.ndarray,
    ref_t: np.ndarray,
) -> str:
    """For each differing rank: the float64 gap between the right answer's score and
    the closest wrong one (a rounding-level gap means a near-tie, not a bug)."""
    img64, txt64 = img.double(), txt.double()
    lines = []
    for q in np.flatnonzero(ours_i.numpy() != ref_i + 1):
        s = txt64 @ img64[q]
        own = t2i == q
        gap = (s[~own] - s[own].max()).abs().min()
        lines.append(f"image {q}: ours {int(ours_i[q])} vsepp {int(ref_i[q]) + 1} gap {gap:.1e}")
    for m in np.flatnonzero(ours_t.numpy() != ref_t + 1):
        s = img64 @ txt64[m]
        other = torch.arange(len(img)) != t2i[m]
        gap = (s[other] - s[t2i[m]]).abs().min()
        lines.append(f"caption {m}: ours {int(ours_t[m])} vsepp {int(ref_t[m]) + 1} gap {gap:.1e}")
    return "; ".join(lines)


def time_methods(
    n_img: int, dim: int, noise: float, chunk: int | None, rounds: int, vsepp_rounds: int
) -> dict[str, list[float]]:
    """Interleaved timings (seconds): every round runs matmul and ours (after one
    warm-up each), vsepp in the first ``vsepp_rounds`` rounds."""
    img, txt, t2i = make_inputs(n_img, dim, noise)
    calls = {m: make_call(m, img, txt, t2i, chunk) for m in METHODS}
    calls["matmul"]()
    calls["ours"]()
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(rounds):
        for method, call in calls.items():
            if method == "vsepp" and r >= vsepp_rounds:
                continue
            start = time.perf_counter()
            call()
            times[method].append(time.perf_counter() - start)
    return times


def memory_probe(method: str, n_img: int, dim: int, noise: float, chunk: int | None) -> None:
    """Print the peak RSS growth (MiB) of one call (run inside a subprocess)."""
    img, txt, t2i = make_inputs(n_img, dim, noise)
    print_peak_growth(make_call(method, img, txt, t2i, chunk))


def peak_memory_mb(method: str, args: argparse.Namespace, runs: int = 3) -> float:
    """Median peak RSS growth (MiB) of one call over fresh subprocesses."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", method]
    cmd += ["--images", str(args.images), "--dim", str(args.dim), "--noise", str(args.noise)]
    cmd += ["--threads", str(args.threads)] + (
        [] if args.chunk is None else ["--chunk", str(args.chunk)]
    )
    return median_probe(cmd, runs)


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


HEADER = (
    "| N x M, D | chunk | threads | ours s | matmul s | ours / matmul | vsepp s | vsepp / ours "
    "| ours peak MiB | matmul peak MiB | N x M fp32 MiB | ranks = vsepp (fp32 / fp64) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 5,000, D=256")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--noise", type=float, default=None, help="default sqrt(D) / 4")
    parser.add_argument(
        "--chunk", type=int, default=None, help="image rows per matmul (default: library)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vsepp-rounds", type=int, default=2, help="0: no full-size vsepp")
    parser.add_argument(
        "--check64", type=int, default=None, help="images in the fp64 check (default: all)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-probe", metavar="METHOD", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/bench/eval.md; with --quick: printed only)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.dim = 1000, 256
        args.rounds, args.vsepp_rounds = 3, 1
    if args.noise is None:
        args.noise = args.dim**0.5 / 4
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe, args.images, args.dim, args.noise, args.chunk)
        return
    with stdout_to_results(args.out or (None if args.quick else "results/bench/eval.md")):
        n, m = args.images, args.images * CAPS_PER_IMAGE
        n64 = n if args.check64 is None else min(args.check64, n)
        print(
            f"command: python benchmarks/eval.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        )
        print(f"torch {torch.__version__}, numpy {np.__version__}, threads {args.threads}")
        print(f"load average before: {loadavg()}")
        wrong32 = None  # --vsepp-rounds 0: no full-size vsepp run at all
        if args.vsepp_rounds > 0:
            wrong32 = check_equal(n, args.dim, args.noise, torch.float32, args.chunk)
        if n64 > 0:  # --check64 0: timing only
            check_equal(n64, args.dim, args.noise, torch.float64, args.chunk)
        print(
            f"ranks differing from vsepp: float32 {wrong32} of {n + m}, "
            f"float64 0 of {n64 + n64 * CAPS_PER_IMAGE} (asserted; 0 of 0: not checked)"
        )
        same32 = "-" if wrong32 is None else "yes" if wrong32 == 0 else f"{wrong32} differ"
        times = time_methods(n, args.dim, args.noise, args.chunk, args.rounds, args.vsepp_rounds)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        mem = {k: peak_memory_mb(k, args) for k in ("ours", "matmul")}
        cells = [
            f"{n:,} x {m:,}, {args.dim}",
            "auto" if args.chunk is None else str(args.chunk),
            str(args.threads),
            f"{med['ours']:.2f}",
            f"{med['matmul']:.2f}",
            f"{med['ours'] / med['matmul']:.2f}",
            f"{med['vsepp']:.1f}" if "vsepp" in med else "-",
            f"{med['vsepp'] / med['ours']:.0f}" if "vsepp" in med else "-",
            f"{mem['ours']:.0f}",
            f"{mem['matmul']:.0f}",
            f"{n * m * 4 / 2**20:.0f}",
            f"{same32} / " + (f"yes ({n64:,} img)" if n64 else "-"),
        ]
        print("\n" + HEADER)
        print("| " + " | ".join(cells) + " |")
        print(f"\nper-round seconds: { {k: [round(x, 3) for x in v] for k, v in times.items()} }")
        ratios = [o / mm for o, mm in zip(times["ours"], times["matmul"], strict=True)]
        print(f"per-round ours / matmul: {[round(r, 2) for r in ratios]}")
        print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
