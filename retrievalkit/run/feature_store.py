"""Rows of a frozen encoder's outputs on disk, keyed by content (images, captions).

``FeatureStore(directory)`` holds ``part-*.npz`` files, each ``keys`` (strings) and
float16 ``rows``, written whole (a temporary file renamed into place), so runs that
share the cache never read half a part. The frozen image towers
(``pipeline/tower_cache.py``) and the frozen MiniLM's caption cache keep their rows
under ``cache_root()/features/<what computed them>/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
STORE_DTYPE = np.float16


def cache_root() -> Path:
    """``$RETRIEVALKIT_CACHE`` or ``~/.cache/retrievalkit`` (shared with the emoji renders)."""
    return Path(os.environ.get("RETRIEVALKIT_CACHE", Path.home() / ".cache" / "retrievalkit"))


class FeatureStore:
    """Rows on disk: ``directory/part-*.npz`` (``keys``, ``rows`` as ``dtype``)."""

    def __init__(self, directory: Path, dtype: type = STORE_DTYPE) -> None:
        self.directory = directory
        self.dtype = dtype

    def load(self) -> dict[str, np.ndarray]:
        """Every stored row by key (parts written by other runs included)."""
        rows: dict[str, np.ndarray] = {}
        for part in sorted(self.directory.glob("part-*.npz")):
            try:
                with np.load(part) as data:
                    rows.update(zip(data["keys"].tolist(), data["rows"], strict=True))
            except (OSError, ValueError, KeyError) as err:  # a damaged part is recomputed
                log.warning("%s: unreadable feature cache part, ignored (%s)", part, err)
        return rows

    def add(self, keys: Sequence[str], rows: np.ndarray) -> Path:
        """Write ``rows [K, ...]`` under ``keys`` as one new part, atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        path = self.directory / f"part-{name}.npz"
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, keys=np.asarray(keys), rows=rows.astype(self.dtype))
            os.chmod(temporary, 0o644)  # mkstemp makes it 0600; others may share the cache
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path
