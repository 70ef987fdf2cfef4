"""FAISS-backed index (inner product): ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate).

Same API as :class:`ExactIndex`; the vectors are kept too, so the index can be
saved, reloaded, extended and its recall measured against exact search
(``ann_recall``). Below about a million items the flat/exact index is the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.index.base import IndexError_, SearchResult, read_manifest
from retrievalkit.index.exact import ExactIndex

FAISS_FILE = "faiss.index"


class FaissIndex(ExactIndex):
    """``kind``: "flat", "ivf" (``nlist`` lists, ``nprobe`` probed) or "hnsw" (``hnsw_m``)."""

    backend = "faiss"

    def __init__(
        self, dim: int, kind: str = "flat", nlist: int = 1024, nprobe: int = 16, hnsw_m: int = 32
    ) -> None:
        super().__init__(dim)
        if kind not in ("flat", "ivf", "hnsw"):
            raise IndexError_(f"unknown faiss kind {kind!r}; use flat, ivf or hnsw")
        self.kind, self.nlist, self.nprobe, self.hnsw_m = kind, nlist, nprobe, hnsw_m
        self._faiss: Any = None

    def _build(self, vectors: np.ndarray) -> Any:
        import faiss

        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            if vectors.shape[0] < self.nlist:
                raise IndexError_(
                    f"an IVF index with nlist={self.nlist} needs at least that many vectors "
                    f"to train, got {vectors.shape[0]}; lower nlist or use flat"
                )
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = self.nprobe
        return index

    def add(
        self, embeddings: Tensor, keys: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> None:
        start = len(self)
        super().add(embeddings, keys, metadata)
        new = np.ascontiguousarray(self.vectors[start:].numpy())
        if self._faiss is None:
            self._faiss = self._build(np.ascontiguousarray(self.vectors.numpy()))
            self._faiss.add(np.ascontiguousarray(self.vectors.numpy()))
        else:
            self._faiss.add(new)

    def search(self, queries: Tensor, k: int) -> SearchResult:
        if k < 1:
            raise IndexError_(f"k must be at least 1, got {k}")
        if not self.keys:
            raise IndexError_("the index is empty")
        queries = self._check(queries, "queries")
        scores, indices = self._faiss.search(
            np.ascontiguousarray(queries.numpy()), min(k, len(self))
        )
        return SearchResult(
            torch.from_numpy(scores), torch.from_numpy(indices).long(), self.keys, self.metadata
        )

    def save(self, directory: str | Path) -> None:
        import faiss

        directory = Path(directory)
        super().save(directory)
        tmp = directory / (FAISS_FILE + ".tmp")
        faiss.write_index(self._faiss, str(tmp))
        tmp.replace(directory / FAISS_FILE)
        self._write_manifest(
            directory,
            {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe, "hnsw_m": self.hnsw_m},
        )

    @classmethod
    def load(cls, directory: str | Path) -> FaissIndex:
        import faiss

        directory = Path(directory)
        manifest = read_manifest(directory)
        exact = ExactIndex.load(directory)
        index = cls(
            exact.dim,
            manifest.get("kind", "flat"),
            manifest.get("nlist", 1024),
            manifest.get("nprobe", 16),
            manifest.get("hnsw_m", 32),
        )
        index.vectors, index.keys, index.metadata = exact.vectors, exact.keys, exact.metadata
        path = directory / FAISS_FILE
        try:
            index._faiss = faiss.read_index(str(path))
        except RuntimeError as err:
            raise IndexError_(f"{path}: unreadable faiss index ({err})") from None
        if index.kind == "ivf":
            index._faiss.nprobe = index.nprobe
        return index


def ann_recall(ann_index: ExactIndex, exact_index: ExactIndex, queries: Tensor, k: int) -> float:
    """Fraction of the exact top-k that the approximate index also returns."""
    exact = exact_index.search(queries, k).indices
    approx = ann_index.search(queries, k).indices
    found = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact, strict=True))
    return found / exact.numel()
