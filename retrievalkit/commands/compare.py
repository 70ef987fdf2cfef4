"""``retrievalkit compare RECIPE [RECIPE ...] --seeds 3 [--set key=value ...] --out DIR``.

Trains every recipe with seeds 0..N-1 (``--first-seed`` shifts them) (``seed`` of the recipe), scores each run on
its test split and writes ``DIR/comparison.md`` (mean ± std per metric, wall
time), ``comparison.json`` and ``comparison.png`` (bars with error bars).
Finished runs are skipped and interrupted ones resume: run the same command again.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_set_option,
    show_progress,
)
from retrievalkit.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="train recipes over several seeds and tabulate their test scores"
    )
    parser.add_argument(
        "recipes", nargs="+", metavar="RECIPE", help="recipe files or shipped recipe names"
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds are FIRST..FIRST+N-1 (default 0); e.g. run --seeds 1 --first-seed 2 in "
        "parallel with --seeds 2 into the same --out, then --seeds 3 tabulates all",
    )
    add_set_option(parser, help_text="override a value of every recipe, e.g. --set epochs=2")
    parser.add_argument("--out", type=Path, required=True, help="comparison directory")
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _commit() -> str | None:
    """The source tree's git commit (with ``-dirty`` if modified), or None outside git."""
    root = Path(__file__).resolve().parents[2]

    def git(*words: str) -> str:
        command = ["git", "-C", str(root), *words]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def run(args: argparse.Namespace) -> int:
    from retrievalkit.run.device import resolve_device
    from retrievalkit.train.compare import plan_runs, run_all, write_comparison

    if args.seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = plan_runs(args.recipes, seeds, args.overrides, args.out)
    device = str(resolve_device(args.device))
    records = run_all(runs, device, progress=show_progress(args))
    missing = len(runs) - sum(len(r) for r in records.values())
    if missing:
        print(f"compare: {missing} run(s) are being trained by another process and are left out")
    if not records:
        return 0
    words = ["retrievalkit", "compare", *args.recipes, "--seeds", str(args.seeds)]
    if args.first_seed:
        words += ["--first-seed", str(args.first_seed)]
    for override in args.overrides:
        words += ["--set", override]
    command = shlex.join([*words, "--out", str(args.out)])
    write_comparison(records, args.out, command, _commit())
    print((args.out / "comparison.md").read_text())
    print(f"comparison written to {args.out}")
    return 0
