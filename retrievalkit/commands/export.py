"""``retrievalkit export RUN_OR_CHECKPOINT --out DIR``: ONNX files per tower (+ parity)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the towers to ONNX (one file each)")
    parser.add_argument("run", type=Path, help="run directory or checkpoint directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |onnxruntime - torch| allowed"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        print(f"export needs the `export` extra (onnx, onnxruntime): {err}", file=sys.stderr)
        return 2
    from retrievalkit.export import EXAMPLE_CAPTIONS, example_images, export_onnx
    from retrievalkit.pipeline.load import load_model

    loaded = load_model(args.run)
    manifest = export_onnx(
        loaded.model,
        args.out,
        example_images(loaded.config),
        EXAMPLE_CAPTIONS,
        tolerance=args.tolerance,
    )
    print(json.dumps(manifest, indent=2))
    return 0
