"""Feature extraction of a frozen image tower: PyTorch vs onnxruntime vs its FLOP count.

For each thread count: images/s of the frozen trunk (EfficientNet-Lite, pooled
features, the part ``pipeline/tower_cache.py`` runs once per image) in PyTorch
(eval, no grad) and the same network exported to ONNX and run by onnxruntime's CPU
provider, on batches of random images at the tower's input side (the speed does
not depend on the pixels); and the images/s its FLOP count would allow at this
machine's measured fp32 matmul rate (``torch.mm`` of 1024 x 1024, same threads).
The three are timed in interleaved rounds (a PyTorch batch, an onnxruntime batch,
eight matmuls), ``--repeats`` rounds after a warm-up round, medians reported, so a
change of the machine's load hits all three alike: read the ratios.

    OMP_NUM_THREADS=2 python benchmarks/feature_extraction.py --threads 1 2

writes ``results/benchmarks/feature_extraction.md`` (header: command, commit, date,
machine). The machine is shared: numbers vary with the other load on it, which the
table's load column records (1-minute load average before and after each row).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrievalkit.models import build_image_encoder  # noqa: E402
from retrievalkit.pipeline.tower_cache import export_trunk  # noqa: E402
from retrievalkit.run.provenance import write_results  # noqa: E402


def seconds(run) -> float:
    """Wall time of one call of ``run()``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved_medians(runs: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, timed in interleaved rounds (one call of each
    per round, after a warm-up round), so load changes hit all of them alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(seconds(run))
    return {name: statistics.median(values) for name, values in times.items()}


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
            load_before = os.getloadavg()[0]
            torch.set_num_threads(threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            feed = {"images": images.numpy()}
            a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)

            def run_torch() -> None:
                with torch.no_grad():
                    encoder.trunk(images)

            medians = interleaved_medians(
                {
                    "torch": run_torch,
                    "ort": lambda s=session, f=feed: s.run(None, f),
                    "matmul": lambda a=a, b=b: [torch.mm(a, b) for _ in range(8)],
                },
                args.repeats,
            )
            rate = 8 * 2 * 1024**3 / medians["matmul"]
            torch_ips, ort_ips = args.batch / medians["torch"], args.batch / medians["ort"]
            bound_ips = rate / flops
            rows.append(
                f"| {threads} | {load_before:.1f}-{os.getloadavg()[0]:.1f} | {torch_ips:.1f} "
                f"| {ort_ips:.1f} | {ort_ips / torch_ips:.2f} | {rate / 1e9:.1f} "
                f"| {bound_ips:.1f} | {torch_ips / bound_ips:.2f} | {ort_ips / bound_ips:.2f} |"
            )
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"# Feature extraction: EfficientNet-{args.variant} trunk at {side} px",
            "",
            f"Frozen trunk (stem, 7 stages, head conv, average pool -> {encoder.out_dim}-d), "
            f"batches of {args.batch} random images, medians of {args.repeats} interleaved "
            f"rounds after a warm-up. FLOPs per image: {flops / 1e9:.3f} G (torch.utils.flop_counter, "
            "2 per multiply-add). 'FLOP bound' = the measured 1024 x 1024 fp32 matmul rate / "
            "FLOPs per image: the images/s if every FLOP ran at matmul speed.",
            "",
            "| threads | load (1 min, before-after) | PyTorch img/s | onnxruntime img/s | ORT / PyTorch "
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
