"""``retrievalkit embed RUN --split test --out emb.npz``: save a split's embeddings.

``--shard i/N --out DIR`` instead writes shard ``i`` of ``N`` of an index's items
(``--split`` then takes a list, default train val test) for
``index build --from-shards DIR``; see ``pipeline/shards.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_run_argument,
    add_split_option,
    show_progress,
    split_names,
)
from retrievalkit.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="write a split's embeddings to an .npz file")
    add_run_argument(parser)
    add_split_option(
        parser,
        "the recipe's test split; with --shard: every image of every style, as index build",
        "the split to embed (with --shard: the splits whose items are sharded)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output .npz (a directory with --shard)"
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="embed part I (0-based) of N of the index items into DIR/shard-I-of-N/",
    )
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from retrievalkit.pipeline.build import load_splits, model_transform, require_split
    from retrievalkit.pipeline.embed import embed_captions, embed_model_images
    from retrievalkit.pipeline.load import load_model
    from retrievalkit.run.device import resolve_device

    loaded = load_model(args.run, resolve_device(args.device))
    if args.shard is not None:
        return run_shard(args, loaded)
    config, model = loaded.config, loaded.model
    names = split_names(args, [config.data.test_split])
    if len(names) > 1:
        raise InputError(f"--split: one split per .npz file, got {names} (or use --shard)")
    split = require_split(load_splits(config.data), names[0], config.data.name)
    transform = model_transform(model, config.data, train=False, source_kind=split.images.kind)
    progress = show_progress(args)
    arrays: dict[str, np.ndarray] = {}
    if model.has_text:
        arrays["image_emb"] = embed_model_images(
            model, split.images, transform, progress=progress
        ).numpy()
        arrays["text_emb"] = embed_captions(
            model.encode_text, split.captions, progress=progress
        ).numpy()
        arrays["caption_image"] = np.asarray(split.caption_image, dtype=np.int64)
        arrays["image_keys"] = np.asarray(split.image_keys)
    else:
        arrays["emb"] = embed_model_images(
            model, split.images, transform, progress=progress
        ).numpy()
        arrays["labels"] = np.asarray(split.labels, dtype=np.int64)
        arrays["keys"] = np.asarray(split.keys)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"wrote {', '.join(f'{k} {v.shape}' for k, v in arrays.items())} to {args.out}")
    return 0


def run_shard(args: argparse.Namespace, loaded: object) -> int:
    """``--shard i/N``: one shard of the index items (every image of the splits)."""
    from retrievalkit.pipeline.sharded_embed import embed_shard
    from retrievalkit.pipeline.shards import ShardSpec

    spec = ShardSpec.parse(args.shard)
    splits = split_names(args) or None  # default: every image of every style
    path = embed_shard(loaded, splits, spec, args.out, progress=show_progress(args))  # type: ignore[arg-type]
    print(f"wrote {path}")
    return 0
