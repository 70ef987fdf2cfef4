"""``retrievalkit data info NAME`` and ``retrievalkit data show NAME --out grid.png``.

Dataset options are passed as ``--set key=value`` (values parsed as YAML), e.g.
``retrievalkit data info karpathy --set json_path=dataset_coco.json --set image_root=coco``
(``-o`` / ``--option``, the old spelling, still works and says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from retrievalkit.commands.options import (
    add_progress_option,
    add_set_option,
    add_split_option,
    split_names,
)
from retrievalkit.errors import InputError


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["size=128", "skin_tones=true"]`` -> ``{"size": 128, "skin_tones": True}``."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=value")
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
        add_set_option(
            sub,
            help_text="a dataset option, e.g. --set size=32 (repeatable)",
            deprecated=("-o", "--option"),
        )
        add_progress_option(sub)
        if name == "info":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.set_defaults(func=run_info)
        else:
            sub.add_argument("--out", type=Path, required=True, help="PNG file to write")
            add_split_option(
                sub,
                "test",
                "split(s) to show, one grid each (FILE-SPLIT.png for several); a split with "
                "several art styles (emoji train) is drawn one emoji per row, one style per "
                "column",
            )
            sub.add_argument("-n", type=int, default=24, help="number of items (default 24)")
            sub.add_argument("--seed", type=int, default=0, help="which items (default 0)")
            sub.set_defaults(func=run_show)


def _load(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset's splits; bad data or options are a UserError (one line from the CLI)."""
    from retrievalkit.data import load_dataset

    return load_dataset(args.name, **parse_options(args.overrides))


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
    names = split_names(args, ["test"])
    for name in names:
        if name not in splits:
            raise InputError(
                f"dataset {args.name!r} has no split {name!r}; it has {sorted(splits)}"
            )
    for name in names:
        split = splits[name]
        out = args.out if len(names) == 1 else args.out.with_name(f"{args.out.stem}-{name}.png")
        if split.image_styles is not None and len(set(split.image_styles)) > 1:
            keys = save_style_grid(split, out, n=args.n, seed=args.seed)
            print(f"wrote {out}: {len(keys)} emoji of {split.name}, one column per style")
        else:
            shown = save_grid(split, out, n=args.n, seed=args.seed)
            print(f"wrote {out}: {len(shown)} items of {split.name}")
    return 0
