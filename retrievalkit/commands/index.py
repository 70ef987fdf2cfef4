"""``retrievalkit index build RUN_OR_CHECKPOINT --out DIR [--splits train,val,test]
[--backend exact|faiss|...|milvus] [--from-shards DIR]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("index", help="build a searchable index from a trained model")
    actions = parser.add_subparsers(dest="index_command", required=True)
    build = actions.add_parser("build", help="embed a dataset's images/captions and index them")
    build.add_argument("checkpoint", type=Path, help="run directory or checkpoint directory")
    build.add_argument("--out", type=Path, required=True, help="index directory to write")
    build.add_argument(
        "--splits",
        default="train,val,test",
        help="comma-separated splits to index (all by default)",
    )
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
    build.add_argument(
        "--data",
        dest="data_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a data option of the recipe, e.g. --data root=/data/coco",
    )
    build.add_argument("--device", default=None)
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    import yaml

    from retrievalkit.commands.train import default_device
    from retrievalkit.search import MANIFEST, build_index_dir

    overrides = {}
    for item in args.data_options:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--data {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    out = build_index_dir(
        args.checkpoint,
        args.out,
        [s for s in args.splits.split(",") if s],
        backend=args.backend,
        device=args.device or default_device(),
        data_overrides=overrides,
        index_options={"uri": args.milvus_uri, "collection": args.collection},
        shards=args.from_shards,
    )
    print(json.dumps(json.loads((out / MANIFEST).read_text()), indent=2))
    print(f"index written to {out}")
    return 0
