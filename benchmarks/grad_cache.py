"""Gradient caching: peak memory and time of one training step, with and without it.

A cross-modal step (small CNN on 64 x 64 images + GRU captions, VSE++ MH on all
B x B pairs) at batch size B, run plainly and with ``grad_cache_backward`` in
chunks. Peak memory is the growth of the resident set during one step (fresh
subprocess per case, median of 3; Linux), time the median of ``--reps`` steps.

    .venv/bin/python benchmarks/grad_cache.py --batch 512 --chunks 64 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from peak_memory import median_probe, print_peak_growth

from retrievalkit.data import Vocabulary
from retrievalkit.losses import VSELoss
from retrievalkit.pipeline.build import build_model
from retrievalkit.run.config import parse_config
from retrievalkit.run.provenance import stdout_to_results
from retrievalkit.training.grad_cache import grad_cache_backward

WORDS = [
    "a",
    "red",
    "blue",
    "small",
    "big",
    "dog",
    "cat",
    "car",
    "house",
    "tree",
    "by",
    "the",
    "sea",
    "park",
    "two",
    "one",
]


def make_case(batch: int, seed: int = 0):
    """The model, ``images [B, 3, 64, 64]``, B captions and the loss."""
    torch.manual_seed(seed)
    config = parse_config(
        {
            "name": "bench",
            "task": "cross_modal",
            "data": {"name": "synthetic_shapes", "image_size": 64},
            "model": {
                "image": {"name": "small_cnn", "widths": [32, 64, 128, 256], "out_dim": 512},
                "text": {"name": "gru", "word_dim": 300, "hidden_dim": 1024},
                "embed_dim": 1024,
            },
            "losses": [{"name": "vse"}],
        }
    )
    g = torch.Generator().manual_seed(seed)
    captions = [
        " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (8,), generator=g))
        for _ in range(batch)
    ]
    model = build_model(config, Vocabulary.build(captions)).train()
    images = torch.randn(batch, 3, 64, 64, generator=g)
    return model, images, captions, VSELoss()


def make_step(batch: int, chunk: int | None):
    model, images, captions, loss = make_case(batch)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        if chunk is None:
            loss(model.encode_image(images), model.encode_text(captions)).backward()
        else:
            grad_cache_backward(
                [model.encode_image, model.encode_text],
                [images, captions],
                lambda e: loss(*e),
                chunk,
                modules=[model],
            )

    return step


def loadavg() -> str:
    """The 1/5/15-minute load averages, for the results file."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=None, help="results file (default: results/bench/grad_cache.md)"
    )
    args = parser.parse_args()
    if args.probe:
        chunk = None if args.probe[1] == "none" else int(args.probe[1])
        step = make_step(int(args.probe[0]), chunk)
        print_peak_growth(step)
        return
    with stdout_to_results(args.out or "results/bench/grad_cache.md"):
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B = {args.batch}")
        print(f"load average before: {loadavg()}\n")
        print("| step | B | chunk | time (s) | peak MiB |")
        print("|---|---|---|---|---|")
        for chunk in [None, *args.chunks]:
            step = make_step(args.batch, chunk)
            step()  # warm-up
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            label = "none" if chunk is None else str(chunk)
            mib = median_probe([sys.executable, __file__, "--probe", str(args.batch), label])
            name = "plain" if chunk is None else "grad cache"
            print(
                f"| {name} | {args.batch} | {label} | {statistics.median(times):.2f} | {mib:.0f} |",
                flush=True,
            )
        print(f"\nload average after: {loadavg()}")


if __name__ == "__main__":
    main()
