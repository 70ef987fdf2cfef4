"""``retrievalkit train RECIPE [--set key=value ...] [--out DIR] [--resume]``.

Under ``torchrun --nproc_per_node N -m retrievalkit train ...`` every process
joins the process group from torchrun's environment and trains its share of each
global batch; rank 0 writes the run directory, scores the test split and prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_set_option,
    show_progress,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a YAML recipe")
    parser.add_argument(
        "recipe",
        metavar="RECIPE",
        help="a YAML path or a shipped recipe name, e.g. emoji_vsepp",
    )
    add_set_option(parser)
    parser.add_argument("--out", type=Path, default=None, help="run directory (runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/last")
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retrievalkit.training.launch import train_recipe

    run_dir, results = train_recipe(
        args.recipe,
        args.out,
        args.overrides,
        args.device,
        resume=args.resume,
        progress=show_progress(args),
    )
    if results is not None:  # rank 0 (or the only process)
        print(json.dumps(results, indent=2))
        print(f"run written to {run_dir}")
    return 0
