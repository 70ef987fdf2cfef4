"""``retrievalkit export RUN --out DIR``: ONNX files per tower (+ parity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrievalkit.commands.options import add_device_option, add_progress_option, add_run_argument
from retrievalkit.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the towers to ONNX (one file each)")
    add_run_argument(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |onnxruntime - torch| allowed"
    )
    add_device_option(parser)
    add_progress_option(parser)
    parser.description = (
        "--device is where the checkpoint is loaded; the graph is traced and its parity "
        "checked on CPU (onnxruntime's CPU provider), so the files are the same either way."
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise InputError(
            f"export needs the `export` extra: pip install 'retrievalkit[export]' ({err})"
        ) from None
    from retrievalkit.export import EXAMPLE_CAPTIONS, example_images, export_onnx
    from retrievalkit.pipeline.load import load_model
    from retrievalkit.run.device import resolve_device

    loaded = load_model(args.run, resolve_device(args.device))
    manifest = export_onnx(
        loaded.model,
        args.out,
        example_images(loaded.model, loaded.config),
        EXAMPLE_CAPTIONS,
        tolerance=args.tolerance,
    )
    print(json.dumps(manifest, indent=2))
    return 0
