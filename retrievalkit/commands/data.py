"""``retrievalkit data info NAME`` and ``retrievalkit data show NAME --out grid.png``.

Dataset options are passed as ``-o key=value`` (values parsed as YAML), e.g.
``retrievalkit data info karpathy -o json_path=dataset_coco.json -o image_root=coco``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from retrievalkit.errors import InputError


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["size=128", "skin_tones=true"]`` -> ``{"size": 128, "skin_tones": True}``."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-o {item!r}: expected key=value")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect a dataset: counts and a picture grid")
    actions = parser.add_subparsers(dest="data_command", required=True)
    for name, help_text in (
        ("info", "counts per split and the source files"),
        ("show", "write a grid of images with captions or labels"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("name", help="dataset name, e.g. emoji, fashion-mnist, karpathy")
        sub.add_argument(
            "-o",
            "--option",
            dest="options",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="dataset option (repeatable)",
        )
        if name == "info":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.set_defaults(func=run_info)
        else:
            sub.add_argument("--out", type=Path, required=True, help="PNG file to write")
            sub.add_argument(
                "--split",
                default="test",
                help="split to show (default: test); a split with several art styles "
                "(emoji train) is drawn one emoji per row, one style per column",
            )
            sub.add_argument("-n", type=int, default=24, help="number of items (default 24)")
            sub.add_argument("--seed", type=int, default=0, help="which items (default 0)")
            sub.set_defaults(func=run_show)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset's splits; bad data or options are a UserError (one line from the CLI)."""
    from retrievalkit.data import load_dataset

    return load_dataset(args.name, **parse_options(args.options))


def run_info(args: argparse.Namespace) -> int:
    from retrievalkit.data.overview import dataset_summary, split_summary

    splits = _load(args)
    if args.json:
        print(json.dumps({name: split_summary(s) for name, s in splits.items()}, indent=2))
    else:
        print(f"dataset {args.name}")
        print(dataset_summary(splits))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from retrievalkit.data.overview import save_grid, save_style_grid

    splits = _load(args)
    if args.split not in splits:
        raise InputError(
            f"dataset {args.name!r} has no split {args.split!r}; it has {sorted(splits)}"
        )
    split = splits[args.split]
    if split.image_styles is not None and len(set(split.image_styles)) > 1:
        keys = save_style_grid(split, args.out, n=args.n, seed=args.seed)
        print(f"wrote {args.out}: {len(keys)} emoji of {split.name}, one column per style")
        return 0
    shown = save_grid(split, args.out, n=args.n, seed=args.seed)
    print(f"wrote {args.out}: {len(shown)} items of {split.name}")
    return 0
