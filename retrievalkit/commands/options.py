"""The options every command spells the same way (README "The command line").

- ``--set KEY=VALUE`` (repeatable): the one override option; a dotted path into the
  recipe (``optim.lr=1e-4``, ``stages.0.epochs=1``), or a dataset option for ``data``.
- ``--split NAME [NAME ...]``: one or more splits, space- or comma-separated.
- ``--device auto|cpu|cuda|cuda:N``: ``auto`` (default) is cuda when available.
- ``--no-progress``: no progress bars; there are none either when stderr is not a
  terminal.

This module imports neither torch nor anything heavy: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from retrievalkit.errors import InputError


class _DeprecatedAppend(argparse.Action):
    """A hidden old spelling of ``--set``: appends ``prefix + value`` to ``--set``'s
    list and says once on stderr which spelling replaces it."""

    def __init__(self, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        self.prefix = prefix
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        print(f"note: {option} is deprecated; use --set {self.prefix}KEY=VALUE", file=sys.stderr)
        items = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, [*items, self.prefix + str(values)])


def add_set_option(
    parser: argparse.ArgumentParser,
    help_text: str = "override a recipe value by its dotted path, e.g. --set optim.lr=1e-4 "
    "or --set stages.0.epochs=1 (repeatable)",
    deprecated: tuple[str, ...] = (),
    deprecated_prefix: str = "",
) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``; ``deprecated``: old
    spellings kept as hidden aliases (their values get ``deprecated_prefix``)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )
    if deprecated:
        parser.add_argument(
            *deprecated,
            dest="overrides",
            action=_DeprecatedAppend,
            prefix=deprecated_prefix,
            help=argparse.SUPPRESS,
        )


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ``RUN``: a run directory (its best checkpoint) or a checkpoint
    directory."""
    parser.add_argument(
        "run", metavar="RUN", help="run directory (its best checkpoint) or checkpoint directory"
    )


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    """The positional ``INDEX``: a directory written by ``index build``."""
    parser.add_argument(
        "index", metavar="INDEX", help="index directory written by `retrievalkit index build`"
    )


def add_split_option(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    """``--split A [B ...]`` or ``--split A,B``; read it with :func:`split_names`."""
    parser.add_argument(
        "--split", nargs="+", default=None, metavar="NAME", help=f"{help_text} (default: {default})"
    )


def split_names(args: argparse.Namespace, default: list[str] | None = None) -> list[str]:
    """The names given to ``--split`` (commas split too), or ``default``."""
    if args.split is None:
        return list(default or [])
    names = [name for item in args.split for name in item.split(",") if name.strip()]
    if not names:
        raise InputError("--split: expected one or more split names")
    return [name.strip() for name in names]


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, default ``auto``; resolve it with ``run.device.resolve_device``."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (default: cuda when available, else cpu), cpu, cuda, cuda:N",
    )


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``; read it with :func:`show_progress`."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none either when stderr is not a terminal)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Bars only when asked for and stderr is a terminal (never in logs or pipes)."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()
