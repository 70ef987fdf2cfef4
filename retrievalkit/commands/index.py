"""``retrievalkit index build RUN --out DIR [--split train val test]
[--backend exact|faiss|...|milvus] [--from-shards DIR] [--set data.options.KEY=VALUE]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_run_argument,
    add_set_option,
    add_split_option,
    show_progress,
    split_names,
)
from retrievalkit.errors import InputError

DATA_OPTIONS = "data.options."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="build a searchable index from a trained model")
    actions = parser.add_subparsers(dest="index_command", required=True)
    build = actions.add_parser("build", help="embed a dataset's images/captions and index them")
    add_run_argument(build)
    build.add_argument("--out", type=Path, required=True, help="index directory to write")
    add_split_option(
        build,
        "every image of every style: train and each style's view of val and test, as the "
        "demo indexes; else train val test",
        "splits to index",
    )
    build.add_argument("--splits", dest="split", nargs="+", help=argparse.SUPPRESS)  # old name
    build.add_argument(
        "--backend",
        default="exact",
        choices=["exact", "faiss", "faiss-ivf", "faiss-hnsw", "milvus"],
    )
    build.add_argument(
        "--milvus-uri",
        default=None,
        help="milvus: a server URI (http://host:19530; token from $MILVUS_TOKEN) or a "
        "milvus-lite .db file (default: one inside each side's directory)",
    )
    build.add_argument(
        "--collection",
        default=None,
        help="milvus: collection name prefix (default retrievalkit; _images/_captions appended)",
    )
    build.add_argument(
        "--from-shards",
        type=Path,
        default=None,
        metavar="DIR",
        help="index the shards written by `embed --shard i/N --out DIR` (one at a time) "
        "instead of embedding here",
    )
    add_set_option(
        build,
        help_text="override a data option of the recipe, e.g. --set data.options.root=/data/coco "
        "(repeatable)",
        deprecated=("--data",),
        deprecated_prefix=DATA_OPTIONS,
    )
    build.add_argument(
        "--no-pictures",
        action="store_true",
        help="do not keep each image as indexed in DIR/pictures (the page then shows keys)",
    )
    add_device_option(build)
    add_progress_option(build)
    build.set_defaults(func=run_build)


def data_overrides(items: list[str]) -> dict[str, object]:
    """``["data.options.root=/x"]`` -> ``{"root": "/x"}`` (values parsed as YAML)."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(DATA_OPTIONS) or key == DATA_OPTIONS:
            raise InputError(
                f"--set {item!r}: index build takes data options only, {DATA_OPTIONS}KEY=VALUE"
            )
        overrides[key.removeprefix(DATA_OPTIONS)] = yaml.safe_load(value)
    return overrides


def run_build(args: argparse.Namespace) -> int:
    from retrievalkit.run.device import resolve_device
    from retrievalkit.search import MANIFEST, build_index_dir
    from retrievalkit.search.index_dir import describe

    out = build_index_dir(
        args.run,
        args.out,
        split_names(args) or None,
        backend=args.backend,
        device=resolve_device(args.device),
        progress=show_progress(args),
        data_overrides=data_overrides(args.overrides),
        index_options={"uri": args.milvus_uri, "collection": args.collection},
        shards=args.from_shards,
        pictures=not args.no_pictures,
    )
    manifest = json.loads((out / MANIFEST).read_text())
    print(json.dumps(manifest, indent=2))
    print(describe(manifest))
    print(f"index written to {out}")
    return 0
