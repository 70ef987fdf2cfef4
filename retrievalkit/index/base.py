"""What every index returns, and the on-disk layout shared by the backends.

Directory: ``manifest.json`` (format, backend, kind, dim, count, dtype, and
backend settings), ``vectors.npy`` (float32 ``[N, D]``), ``items.jsonl`` (one
``{"key": ..., "metadata": ...}`` per vector, in index order), plus backend files
(``faiss.index``). Every file is written to a temporary name and renamed into
place (``os.replace``); the manifest is written last.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from retrievalkit.errors import UserError
from retrievalkit.run.files import atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
ITEMS = "items.jsonl"


MANIFEST_FIELDS = ("backend", "dim", "count")


class IndexError_(UserError, ValueError):
    """A bad index directory or a bad call (wrong dim, k < 1)."""


@dataclass(frozen=True)
class Hit:
    """One result: ``rank`` is 1-based; ``metadata`` is what was added with the key."""

    rank: int
    score: float
    key: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class SearchResult:
    """``scores [Q, k]`` float32 (best first), ``indices [Q, k]`` int64, and the items.

    ``k`` is ``min(k asked, len(index))``. An approximate index (IVF) can find
    fewer than ``k`` items for a query: the missing slots hold index ``-1`` and
    score ``-inf``, and ``keys``/``hits`` leave them out.
    """

    scores: Tensor
    indices: Tensor
    item_keys: list[str]
    item_metadata: list[dict[str, Any] | None]

    def keys(self, query: int) -> list[str]:
        """Keys of query ``query``'s results, best first."""
        return [self.item_keys[i] for i in self.indices[query].tolist() if i >= 0]

    def hits(self, query: int) -> list[Hit]:
        """``Hit(rank, score, key, metadata)`` of query ``query``'s results, best first."""
        pairs = zip(self.scores[query].tolist(), self.indices[query].tolist(), strict=True)
        return [
            Hit(rank, score, self.item_keys[i], self.item_metadata[i])
            for rank, (score, i) in enumerate(((s, i) for s, i in pairs if i >= 0), start=1)
        ]


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def write_items(directory: Path, keys: list[str], metadata: list[dict[str, Any] | None]) -> None:
    lines = (
        json.dumps({"key": k, "metadata": m}, ensure_ascii=False)
        for k, m in zip(keys, metadata, strict=True)
    )
    atomic_write_text(directory / ITEMS, "".join(line + "\n" for line in lines))


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (with the format version) atomically."""
    atomic_write_text(
        directory / MANIFEST, json.dumps({"format": FORMAT_VERSION, **manifest}, indent=2) + "\n"
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise IndexError_(f"{path}: missing; {directory} is not an index directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexError_(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise IndexError_(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexError_(f"{path}: format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    missing = [field for field in MANIFEST_FIELDS if field not in manifest]
    if missing:
        raise IndexError_(f"{path}: missing field(s) {', '.join(missing)}")
    for field in ("dim", "count"):
        if not isinstance(manifest[field], int) or manifest[field] < 0:
            raise IndexError_(
                f"{path}: {field} must be a non-negative integer, got {manifest[field]!r}"
            )
    return manifest


def read_items(directory: Path, count: int) -> tuple[list[str], list[dict[str, Any] | None]]:
    path = directory / ITEMS
    keys: list[str] = []
    metadata: list[dict[str, Any] | None] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise IndexError_(f"{path}: missing") from None
    except UnicodeDecodeError as err:
        raise IndexError_(f"{path}: not UTF-8 text ({err})") from None
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
            keys.append(str(item["key"]))
            metadata.append(item.get("metadata"))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise IndexError_(f"{path}:{number}: bad item line ({err})") from None
    if len(keys) != count:
        raise IndexError_(f"{path}: {len(keys)} items, manifest says {count}")
    return keys, metadata


def read_vectors(directory: Path, count: int, dim: int) -> np.ndarray:
    path = directory / VECTORS
    try:
        vectors = np.load(path)
    except FileNotFoundError:
        raise IndexError_(f"{path}: missing") from None
    except (OSError, ValueError, EOFError) as err:
        raise IndexError_(f"{path}: unreadable ({err})") from None
    if vectors.dtype.kind != "f":
        raise IndexError_(f"{path}: dtype {vectors.dtype}, expected float32")
    if vectors.shape != (count, dim):
        raise IndexError_(f"{path}: shape {vectors.shape}, manifest says {(count, dim)}")
    return vectors.astype(np.float32, copy=False)
