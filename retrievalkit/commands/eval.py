"""``retrievalkit eval RUN [--split test [val ...]] [--protocol coco1k|coco5k|f30k|full]``.

Prints each split's scores, then its record as one JSON line (``--json``: only the
JSON lines, one per split).
"""

from __future__ import annotations

import argparse
import json

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_run_argument,
    add_set_option,
    add_split_option,
    show_progress,
    split_names,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained model on one or more splits")
    add_run_argument(parser)
    add_split_option(parser, "the recipe's test split", "split(s) to score")
    parser.add_argument("--protocol", default=None, help="coco1k, coco5k, f30k or full")
    add_set_option(parser)
    add_device_option(parser)
    add_progress_option(parser)
    parser.add_argument("--json", action="store_true", help="print only the JSON records")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retrievalkit.pipeline.build import load_splits, model_transform, require_split
    from retrievalkit.pipeline.evaluate import evaluate
    from retrievalkit.pipeline.load import load_model
    from retrievalkit.run.config import apply_overrides, config_to_dict, parse_config
    from retrievalkit.run.device import resolve_device

    loaded = load_model(args.run, resolve_device(args.device))
    config = loaded.config
    if args.overrides:
        config = parse_config(apply_overrides(config_to_dict(config), args.overrides))
    available = load_splits(config.data)
    names = split_names(args, [config.data.test_split])
    splits = [require_split(available, name, config.data.name) for name in names]
    for name, split in zip(names, splits, strict=True):
        transform = model_transform(
            loaded.model, config.data, train=False, source_kind=split.images.kind
        )
        record = evaluate(
            loaded.model,
            split,
            transform,
            args.protocol or config.eval.protocol,
            config.eval.batch_size,
            progress=show_progress(args) and not args.json,
        )
        record = {"split": name, **record, "checkpoint": str(loaded.checkpoint_dir)}
        if not args.json:
            for key, value in record.items():
                print(
                    f"{key:>14}: {value:.2f}" if isinstance(value, float) else f"{key:>14}: {value}"
                )
        print(json.dumps(record))
    return 0
