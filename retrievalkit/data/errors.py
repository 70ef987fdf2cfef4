"""The one error type for bad input data: it names the file, the item and what was expected."""

from __future__ import annotations


class DataError(ValueError):
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
