"""The ``retrievalkit`` command: each sub-command lives in its own module.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)`` which adds its
parser and sets ``func`` (called with the parsed namespace, returns an exit code).
Modules are imported lazily per command so ``retrievalkit --help`` stays fast.

The grammar every command shares (README "The command line"; the shared options
live in :mod:`retrievalkit.commands.options`): ``--set KEY=VALUE`` for overrides,
a positional ``RECIPE``, ``RUN`` or ``INDEX``, ``--split`` taking a list,
``--device auto``, ``--no-progress``, ``--json``.

Errors: a usage error (an unknown option, a missing argument) and a
:class:`~retrievalkit.errors.UserError` (bad recipe, data, checkpoint, index,
option) print ``error: <message>`` on one line and exit with code 2; any other
exception is a bug and keeps its traceback. ``--debug`` shows the traceback of
every error. Building the parser imports no torch, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from contextlib import nullcontext
from typing import Any, NoReturn

from retrievalkit.commands.options import show_progress
from retrievalkit.errors import USER_ERROR_EXIT, UserError, one_line
from retrievalkit.run.env import temporary_env

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


class OneLineParser(argparse.ArgumentParser):
    """A parser (and, by inheritance, its sub-parsers) whose usage errors are one
    line, ``error: <prog>: <message> (see <prog> --help)``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


QUIET_BARS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def library_bars(shown: bool) -> Any:
    """While a command runs without bars (``--no-progress``, or stderr not a
    terminal), the libraries show none either (tqdm, Hugging Face model loading);
    the environment is restored afterwards."""
    return nullcontext() if shown else temporary_env(QUIET_BARS)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        with library_bars(show_progress(args)):
            return int(args.func(args) or 0)
    except UserError as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
