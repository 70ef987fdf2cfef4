"""``retrievalkit train CONFIG [--set key=value ...] [--out DIR] [--resume]``.

Under ``torchrun --nproc_per_node N -m retrievalkit train ...`` every process
joins the process group from torchrun's environment and trains its share of each
global batch; rank 0 writes the run directory, scores the test split and prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a YAML recipe")
    parser.add_argument(
        "config", help="recipe: a YAML path or a shipped recipe name, e.g. emoji_vsepp"
    )
    add_overrides_option(parser)
    parser.add_argument("--out", type=Path, default=None, help="run directory (runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/last")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def add_overrides_option(parser: argparse.ArgumentParser) -> None:
    """``--set key.path=value`` (repeatable), parsed by ``train.config.apply_overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.lr=1e-4 (repeatable)",
    )


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    from retrievalkit.train.launch import train_recipe

    run_dir, results = train_recipe(
        args.config,
        args.out,
        args.overrides,
        args.device,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if results is not None:  # rank 0 (or the only process)
        print(json.dumps(results, indent=2))
        print(f"run written to {run_dir}")
    return 0
