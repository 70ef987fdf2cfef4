"""``retrievalkit eval RUN_OR_CHECKPOINT [--split test] [--protocol coco1k|coco5k|f30k|full]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrievalkit.commands.train import add_overrides_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained model on a split")
    parser.add_argument("checkpoint", type=Path, help="run directory or checkpoint directory")
    parser.add_argument("--split", default=None, help="split name (default: the recipe's test)")
    parser.add_argument("--protocol", default=None, help="coco1k, coco5k, f30k or full")
    add_overrides_option(parser)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", action="store_true", help="print only the JSON record")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retrievalkit.commands.train import default_device
    from retrievalkit.pipeline.build import build_transform, load_splits, require_split
    from retrievalkit.pipeline.evaluate import evaluate
    from retrievalkit.pipeline.load import load_model
    from retrievalkit.run.config import apply_overrides, config_to_dict, parse_config

    device = args.device or default_device()
    loaded = load_model(args.checkpoint, device)
    config = loaded.config
    if args.overrides:
        config = parse_config(apply_overrides(config_to_dict(config), args.overrides))
    split_name = args.split or config.data.test_split
    split = require_split(load_splits(config.data), split_name, config.data.name)
    transform = build_transform(split.images.kind, config.data, train=False)
    record = evaluate(
        loaded.model,
        split,
        transform,
        args.protocol or config.eval.protocol,
        config.eval.batch_size,
        progress=not args.json,
    )
    record["checkpoint"] = str(loaded.checkpoint_dir)
    if not args.json:
        for key, value in record.items():
            print(f"{key:>14}: {value:.2f}" if isinstance(value, float) else f"{key:>14}: {value}")
    print(json.dumps(record))
    return 0
