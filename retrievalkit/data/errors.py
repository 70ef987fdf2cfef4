"""The one error type for bad input data, and the ``on_error="raise"|"skip"`` policy.

A :class:`DataError` names the file, the line or item, and what was expected:
``str(err)`` reads ``<file>:<line or item>: <problem>; expected <what>``.
Loaders take ``on_error``: ``"raise"`` (default) stops at the first bad item,
``"skip"`` leaves bad items out and logs how many (and the first few) once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from retrievalkit.errors import UserError

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES = ("raise", "skip")


class DataError(UserError, ValueError):
    """Bad input data. ``str(err)`` reads ``<file>[:<line or item>]: <problem>; expected <what>``."""

    def __init__(
        self,
        path: object,
        problem: str,
        expected: str | None = None,
        item: object | None = None,
    ) -> None:
        where = f"{path}" if item is None else f"{path}:{item}"
        message = f"{where}: {problem}"
        if expected:
            message += f"; expected {expected}"
        super().__init__(message)
        self.path = path
        self.item = item
        self.problem = problem


def read_text_file(path: Path, what: str, encoding_expected: str = "a UTF-8 text file") -> str:
    """The UTF-8 text of ``path``; a missing or unreadable file is a :class:`DataError`
    naming it and what was expected (``what`` when missing)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found", what) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"unreadable ({err})", encoding_expected) from None


class BadItems:
    """Applies one ``on_error`` policy while a loader reads one source.

    ``handle(err)`` raises ``err`` under ``"raise"``; under ``"skip"`` it counts it.
    ``report()`` logs the count once (call it when the source is read).
    """

    def __init__(self, on_error: str, what: str, show: int = 3) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error, self.what, self.show = on_error, what, show
        self.skipped: list[DataError] = []

    def handle(self, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped.append(err)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def report(self) -> None:
        if not self.skipped:
            return
        first = "; ".join(str(e) for e in self.skipped[: self.show])
        more = f" (and {self.count - self.show} more)" if self.count > self.show else ""
        log.warning("%s: skipped %d bad items: %s%s", self.what, self.count, first, more)
