"""The ``retrievalkit`` command: each sub-command lives in its own module.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)`` which adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit code).
Modules are imported lazily per command so ``retrievalkit --help`` stays fast.

Errors: a :class:`~retrievalkit.errors.UserError` (bad recipe, data, checkpoint,
index, option) prints ``error: <message>`` on one line and exits with code 2;
any other exception is a bug and keeps its traceback. ``--debug`` shows the
traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from retrievalkit.errors import USER_ERROR_EXIT, UserError, one_line

COMMAND_MODULES: tuple[str, ...] = (
    "retrievalkit.commands.train",
    "retrievalkit.commands.compare",
    "retrievalkit.commands.eval",
    "retrievalkit.commands.embed",
    "retrievalkit.commands.index",
    "retrievalkit.commands.search",
    "retrievalkit.commands.demo",
    "retrievalkit.commands.data",
    "retrievalkit.commands.serve",
    "retrievalkit.commands.bench",
    "retrievalkit.commands.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrievalkit", description="Train, evaluate and serve retrieval embeddings."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of every error (bad input too)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
