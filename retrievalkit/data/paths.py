"""Resolving file names from user lists against a root, safely and fast.

``RootResolver(root)(relative, listed_in, item)`` is ``root / relative`` after
refusing anything that escapes ``root``: an empty name, an absolute path (POSIX or
Windows style), a ``..`` part, and a path whose real location (after symlinks of
its folders or of the file itself) is outside the real root. Each refusal is a
:class:`DataError` naming ``listed_in`` and ``item``. Real folder locations are
cached per resolver, so a list of 100k files costs about one ``lstat`` per file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from retrievalkit.data.errors import DataError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)


class RootResolver:
    """Resolve relative image paths under one root (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.real_root = os.path.realpath(self.root)
        self._real_dirs: dict[str, str] = {}

    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _real_dir(self, folder: str) -> str:
        real = self._real_dirs.get(folder)
        if real is None:
            real = self._real_dirs[folder] = os.path.realpath(folder)
        return real

    def __call__(self, relative: object, listed_in: object, item: object) -> Path:
        if not isinstance(relative, str) or not relative.strip():
            raise DataError(listed_in, f"empty image path {relative!r}", "a relative path", item)
        if relative.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(relative):
            raise DataError(
                listed_in,
                f"absolute image path {relative!r}",
                f"a path relative to the root {self.root}",
                item,
            )
        parts = relative.replace("\\", "/").split("/")
        if ".." in parts:
            raise DataError(
                listed_in,
                f"image path {relative!r} leaves the root",
                f"a path inside {self.root}",
                item,
            )
        joined = os.path.join(self.root, *parts)
        real = os.path.join(self._real_dir(os.path.dirname(joined)), parts[-1])
        if os.path.islink(joined):
            real = os.path.realpath(joined)
        if not self._inside(real):
            raise DataError(
                listed_in,
                f"image path {relative!r} points outside the root (to {real})",
                f"a file inside {self.real_root}",
                item,
            )
        return Path(joined)


def resolve_under(root: Path, relative: str, listed_in: object, item: object) -> Path:
    """One-off :class:`RootResolver` call (use a resolver for long lists)."""
    return RootResolver(root)(relative, listed_in, item)


def check_image_file(path: Path, listed_in: object, item: object, verify: bool) -> None:
    """Raise :class:`DataError` if ``path`` is missing (or, with ``verify``, unreadable)."""
    if not os.path.isfile(path):
        raise DataError(listed_in, f"image file {path} is missing", "an existing image file", item)
    if verify:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as err:  # PIL raises many types for a broken file
            raise DataError(
                listed_in, f"image file {path} is not readable ({err})", "a JPEG/PNG file", item
            ) from None
