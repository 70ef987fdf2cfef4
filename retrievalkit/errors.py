"""The base of every error the project raises on purpose about what a user gave.

A :class:`UserError` means "the input is wrong", not "the code is wrong": a
recipe that does not parse, a data file that is missing or malformed, a
checkpoint that is truncated, an index that does not fit the model. Its message
names the file (and line, item or field) and what was expected. The CLI prints
such errors as one line, ``error: <message>``, and exits with
:data:`USER_ERROR_EXIT`; any other exception is a bug and keeps its traceback.

This module imports nothing from the package, so every layer can use it.
"""

from __future__ import annotations

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Bad input from the user (file, recipe, option, request); never a bug."""


class InputError(UserError, ValueError):
    """A value given by the user is not acceptable (an empty query, an unknown mode)."""


class ConfigError(UserError, ValueError):
    """A recipe is malformed: the message names the file and the key path."""


class MissingFileError(UserError, FileNotFoundError):
    """A path given by the user (or named in a recipe) does not exist."""


def one_line(err: BaseException) -> str:
    """``str(err)`` on one line: line breaks (YAML marks, lists) become ``"; "``."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


class UnknownNameError(UserError, KeyError):
    """A name (loss, encoder, dataset) that no registry knows; lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OptionsError(UserError, TypeError):
    """Options (from a recipe) that the named factory does not take."""
