"""What every index returns, and the on-disk layout shared by the backends.

Directory: ``manifest.json`` (backend, dim, count, format), ``vectors.npy``
(float32 ``[N, D]``), ``items.jsonl`` (one ``{"key": ..., "metadata": ...}`` per
vector), plus backend files (``faiss.index``). Files are written to temporary
names and renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
ITEMS = "items.jsonl"


class IndexError_(ValueError):
    """A bad index directory or a bad call (wrong dim, k < 1)."""


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    key: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class SearchResult:
    """``scores [Q, k]`` float32 (best first), ``indices [Q, k]`` int64, and the items."""

    scores: Tensor
    indices: Tensor
    item_keys: list[str]
    item_metadata: list[dict[str, Any] | None]

    def keys(self, query: int) -> list[str]:
        return [self.item_keys[int(i)] for i in self.indices[query]]

    def hits(self, query: int) -> list[Hit]:
        return [
            Hit(rank, float(score), self.item_keys[int(i)], self.item_metadata[int(i)])
            for rank, (score, i) in enumerate(
                zip(self.scores[query].tolist(), self.indices[query].tolist(), strict=True), start=1
            )
        ]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise IndexError_(f"{path}: missing; {directory} is not an index directory")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise IndexError_(f"{path}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexError_(f"{path}: format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    return manifest


def read_items(directory: Path, count: int) -> tuple[list[str], list[dict[str, Any] | None]]:
    path = directory / ITEMS
    keys: list[str] = []
    metadata: list[dict[str, Any] | None] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise IndexError_(f"{path}: missing") from None
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
    except (OSError, ValueError) as err:
        raise IndexError_(f"{path}: unreadable ({err})") from None
    if vectors.shape != (count, dim):
        raise IndexError_(f"{path}: shape {vectors.shape}, manifest says {(count, dim)}")
    return vectors.astype(np.float32, copy=False)
