"""Exact inner-product search in torch, blockwise with a memory cap.

Top-k is computed per database block (``block_size`` rows) and merged, so no
``Q x N`` matrix exists for a large N. Ties: the lower item index ranks first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.index.base import (
    FORMAT_VERSION,
    MANIFEST,
    VECTORS,
    IndexError_,
    SearchResult,
    atomic_save_npy,
    atomic_write_text,
    read_items,
    read_manifest,
    read_vectors,
    write_items,
)


def blockwise_topk(
    queries: Tensor, database: Tensor, k: int, block_size: int = 65536
) -> tuple[Tensor, Tensor]:
    """Top-``k`` inner products: ``[Q, D] x [N, D] -> scores, indices [Q, min(k, N)]``."""
    k = min(k, database.shape[0])
    best_scores = torch.full((queries.shape[0], 0), -torch.inf, device=queries.device)
    best_indices = torch.zeros((queries.shape[0], 0), dtype=torch.long, device=queries.device)
    for start in range(0, database.shape[0], block_size):
        block = database[start : start + block_size]
        scores = queries @ block.T
        top = scores.topk(min(k, block.shape[0]), dim=1)
        merged_scores = torch.cat([best_scores, top.values], dim=1)
        merged_indices = torch.cat([best_indices, top.indices + start], dim=1)
        # stable ordering: sort by index first, then by score (stable) -> ties by index
        by_index = merged_indices.argsort(dim=1)
        merged_scores = merged_scores.gather(1, by_index)
        merged_indices = merged_indices.gather(1, by_index)
        order = merged_scores.argsort(dim=1, descending=True, stable=True)[:, :k]
        best_scores, best_indices = merged_scores.gather(1, order), merged_indices.gather(1, order)
    return best_scores, best_indices


class ExactIndex:
    """Exact cosine/inner-product index with keys and metadata; add, search, save, load."""

    backend = "exact"

    def __init__(self, dim: int, block_size: int = 65536) -> None:
        self.dim = dim
        self.block_size = block_size
        self.vectors = torch.zeros(0, dim)
        self.keys: list[str] = []
        self.metadata: list[dict[str, Any] | None] = []

    def __len__(self) -> int:
        return len(self.keys)

    def _check(self, embeddings: Tensor, what: str) -> Tensor:
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise IndexError_(f"{what} must be [n, {self.dim}], got {tuple(embeddings.shape)}")
        return embeddings.detach().cpu()

    def add(
        self, embeddings: Tensor, keys: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> None:
        """Add ``[n, D]`` vectors with ``n`` keys (and optional metadata dicts)."""
        embeddings = self._check(embeddings, "embeddings")
        if len(keys) != embeddings.shape[0]:
            raise IndexError_(f"{embeddings.shape[0]} vectors but {len(keys)} keys")
        if metadata is not None and len(metadata) != len(keys):
            raise IndexError_(f"{len(keys)} keys but {len(metadata)} metadata entries")
        self.vectors = torch.cat([self.vectors, embeddings])
        self.keys.extend(str(k) for k in keys)
        self.metadata.extend(metadata if metadata is not None else [None] * len(keys))

    def search(self, queries: Tensor, k: int) -> SearchResult:
        """The ``k`` best items per query (``k > len`` returns all)."""
        if k < 1:
            raise IndexError_(f"k must be at least 1, got {k}")
        if not self.keys:
            raise IndexError_("the index is empty")
        queries = self._check(queries, "queries")
        scores, indices = blockwise_topk(queries, self.vectors, k, self.block_size)
        return SearchResult(scores, indices, self.keys, self.metadata)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(directory / VECTORS, self.vectors.numpy())
        write_items(directory, self.keys, self.metadata)
        self._write_manifest(directory, {})

    def _write_manifest(self, directory: Path, extra: dict[str, Any]) -> None:
        import json

        manifest = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "dim": self.dim,
            "count": len(self),
            "dtype": "float32",
            **extra,
        }
        atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> ExactIndex:
        directory = Path(directory)
        manifest = read_manifest(directory)
        index = cls(int(manifest["dim"]))
        count = int(manifest["count"])
        keys, metadata = read_items(directory, count)
        index.vectors = torch.from_numpy(
            np.ascontiguousarray(read_vectors(directory, count, index.dim))
        )
        index.keys, index.metadata = keys, metadata
        return index
