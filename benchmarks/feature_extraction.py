"""Feature extraction of a frozen image tower: PyTorch vs onnxruntime vs its FLOP count.

For each thread count: images/s of the frozen trunk (EfficientNet-Lite, pooled
features, the part ``pipeline/tower_cache.py`` runs once per image) in PyTorch
(eval, no grad) and the same network exported to ONNX and run by onnxruntime's CPU
provider, on batches of random images at the tower's input side (the speed does
not depend on the pixels); and the images/s its FLOP count would allow at this
machine's measured fp32 matmul rate (``torch.mm`` of 1024 x 1024, same threads).
Each figure is the median of ``--repeats`` timed batches after one warm-up batch.

    OMP_NUM_THREADS=2 python benchmarks/feature_extraction.py --threads 1 2

writes ``results/benchmarks/feature_extraction.md`` (header: command, commit, date,
machine). The machine is shared: numbers vary with the other load on it, which the
table's load column records (1-minute load average at the start of each row).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrievalkit.models import build_image_encoder  # noqa: E402
from retrievalkit.pipeline.tower_cache import export_trunk  # noqa: E402
from retrievalkit.run.provenance import write_results  # noqa: E402


def median_seconds(run, repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(threads: int, repeats: int, size: int = 1024) -> float:
    """fp32 FLOP/s of ``torch.mm`` on ``size x size`` matrices (2 n^3 per product)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: torch.mm(a, b), repeats * 4)


def trunk_flops(encoder: torch.nn.Module, side: int) -> int:
    """FLOPs of one image through the trunk (``torch.utils.flop_counter``: 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder.trunk(torch.zeros(1, 3, side, side))
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="lite0", choices=["lite0", "lite1", "lite2"])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "benchmarks" / "feature_extraction.md"
    )
    args = parser.parse_args(argv)
    import onnxruntime as ort

    encoder = build_image_encoder(f"efficientnet_{args.variant}").eval()
    side = encoder.side
    images = torch.randn(args.batch, 3, side, side)
    flops = trunk_flops(encoder, side)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trunk.onnx"
        export_trunk(encoder, path, side)
        for threads in args.threads:
            load = os.getloadavg()[0]
            torch.set_num_threads(threads)
            with torch.no_grad():
                torch_s = median_seconds(lambda: encoder.trunk(images), args.repeats)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"images": images.numpy()}
            ort_s = median_seconds(lambda s=session, f=feed: s.run(None, f), args.repeats)
            rate = matmul_rate(threads, args.repeats)
            torch_ips, ort_ips = args.batch / torch_s, args.batch / ort_s
            bound_ips = rate / flops
            rows.append(
                f"| {threads} | {load:.1f} | {torch_ips:.1f} | {ort_ips:.1f} | {ort_ips / torch_ips:.2f} "
                f"| {rate / 1e9:.1f} | {bound_ips:.1f} | {torch_ips / bound_ips:.2f} "
                f"| {ort_ips / bound_ips:.2f} |"
            )
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"# Feature extraction: EfficientNet-{args.variant} trunk at {side} px",
            "",
            f"Frozen trunk (stem, 7 stages, head conv, average pool -> {encoder.out_dim}-d), "
            f"batches of {args.batch} random images, median of {args.repeats} timed batches "
            f"after a warm-up. FLOPs per image: {flops / 1e9:.3f} G (torch.utils.flop_counter, "
            "2 per multiply-add). 'FLOP bound' = the measured 1024 x 1024 fp32 matmul rate / "
            "FLOPs per image: the images/s if every FLOP ran at matmul speed.",
            "",
            "| threads | load (1 min) | PyTorch img/s | onnxruntime img/s | ORT / PyTorch "
            "| matmul GFLOP/s | FLOP-bound img/s | PyTorch / bound | ORT / bound |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    write_results(args.out, body)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
