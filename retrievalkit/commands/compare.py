"""``retrievalkit compare RECIPE [RECIPE ...] --seeds 3 [--set key=value ...] --out DIR``.

Trains every recipe with seeds 0..N-1 (``--first-seed`` shifts them), each
``--variant NAME KEY=VALUE ...`` (or each row of a ``--variants FILE``) of it when
given, scores each run on its test split (with ``--search-quality``: also indexes
it and scores search on a typed query set, as ``retrievalkit demo`` does) and
writes ``DIR/comparison.md`` (mean ± std per metric, wall time),
``comparison.json`` and ``comparison.png`` (bars with error bars), under a
provenance header. Finished runs are skipped and interrupted ones resume: run the
same command again. ``--runs RUN_DIR ...`` tabulates runs trained elsewhere.
"""

from __future__ import annotations

import argparse
import shlex
from functools import partial
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
        "recipes", nargs="*", metavar="RECIPE", help="recipe files or shipped recipe names"
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
    parser.add_argument(
        "--variant",
        dest="variant_words",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME [KEY=VALUE",
        help="a named row of overrides of each recipe (repeatable), e.g. --variant held_out "
        "data.options.held_out_style=openmoji; --variant base alone is the recipe as is",
    )
    parser.add_argument(
        "--variants",
        default=None,
        metavar="FILE",
        help="a YAML file of variants (or a shipped one's name, e.g. mfsr_emoji_ablation)",
    )
    parser.add_argument(
        "--search-quality",
        nargs="?",
        const="shipped",
        default=None,
        metavar="QUERIES",
        help="also index each run and score search on a typed query set (default: the "
        "shipped emoji query set); the fusion weight is chosen on its dev part",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN",
        help="tabulate these finished run directories (no training), by recipe",
    )
    parser.add_argument("--out", type=Path, required=True, help="comparison directory")
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this comparison (written in its header)."""
    words = ["retrievalkit", "compare", *args.recipes]
    if args.runs:
        words += ["--runs", *map(str, args.runs)]
    else:
        words += ["--seeds", str(args.seeds)]
    if args.first_seed:
        words += ["--first-seed", str(args.first_seed)]
    for override in args.overrides:
        words += ["--set", override]
    for variant in args.variant_words:
        words += ["--variant", *variant]
    if args.variants:
        words += ["--variants", args.variants]
    if args.search_quality:
        words += ["--search-quality"] + (
            [] if args.search_quality == "shipped" else [args.search_quality]
        )
    return shlex.join([*words, "--out", str(args.out)])


def run(args: argparse.Namespace) -> int:
    from retrievalkit.compare.execute import run_all, train_and_score
    from retrievalkit.compare.plan import load_variants, plan_runs, variant_from_words
    from retrievalkit.compare.report import read_run_dirs, write_comparison
    from retrievalkit.eval.query_set import emoji_query_file
    from retrievalkit.run.device import resolve_device

    if args.runs and args.recipes:
        raise InputError("give RECIPEs to train or --runs to tabulate, not both")
    if not args.runs and not args.recipes:
        raise InputError("give at least one RECIPE (or --runs RUN_DIR ...)")
    if args.seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [variant_from_words(words) for words in args.variant_words]
    if args.variants:
        variants += load_variants(args.variants)
    if args.runs:
        records = read_run_dirs(args.runs)
    else:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = plan_runs(args.recipes, seeds, args.overrides, args.out, variants)
        queries = args.search_quality
        if queries is not None:
            queries = emoji_query_file() if queries == "shipped" else Path(queries)
        progress = show_progress(args)

        device = str(resolve_device(args.device))
        train = partial(train_and_score, queries=queries)
        records = run_all(runs, device, progress=progress, train=train)
        missing = len(runs) - sum(len(r) for r in records.values())
        if missing:
            print(
                f"compare: {missing} run(s) are being trained by another process and are left out"
            )
    if not records:
        return 0
    write_comparison(records, args.out, _command(args), variants)
    print((args.out / "comparison.md").read_text())
    print(f"comparison written to {args.out}")
    return 0
