"""The on-disk cache of rendered emoji images, shared by the Noto font and the SVG styles."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Rendered = tuple[np.ndarray, np.ndarray]  # pixels uint8 [N, size, size, 3], ok bool [N]


def load_or_render(path: Path, render: Callable[[], Rendered]) -> Rendered:
    """``(pixels, ok)`` from the ``.npz`` at ``path``; when it is missing or unreadable,
    ``render()`` and write it atomically (unique temp file + rename, so parallel runs
    are safe)."""
    if path.exists():
        try:
            with np.load(path) as data:
                return data["pixels"], data["ok"]
        except (OSError, KeyError, ValueError):
            log.warning("emoji cache %s is unreadable: rendering again", path)
    pixels, ok = render()
    ok = np.asarray(ok)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, pixels=pixels, ok=ok)
    os.replace(tmp, path)
    return pixels, ok
