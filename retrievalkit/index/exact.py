"""Exact cosine (inner-product) search in torch, with keys, metadata, add/save/load.

Flat (exact) search is the default below about a million items: it is exact,
needs no training, and at that size a blockwise scan is fast enough. Use
:class:`~retrievalkit.index.faiss_index.FaissIndex` (IVF/HNSW) beyond that, and
measure what it loses with ``ann_recall``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retrievalkit.index.base import (
    VECTORS,
    IndexError_,
    SearchResult,
    atomic_save_npy,
    read_items,
    read_manifest,
    read_vectors,
    write_items,
    write_manifest,
)
from retrievalkit.index.topk import blockwise_topk

logger = logging.getLogger(__name__)


class ExactIndex:
    """Exact top-k by inner product over ``[N, D]`` vectors, each with a key and metadata.

    ``normalize=True`` (default) L2-normalizes added vectors and queries, so scores
    are cosine similarities; with ``normalize=False`` they are raw inner products
    (the models already return unit vectors, so both agree on their embeddings).
    Vectors stay on the device of the first ``add`` (or of ``load(device=)``/``to``);
    queries are moved there. Search is blockwise (``block_size`` database rows x
    ``query_block_size`` queries at a time), never a full ``Q x N`` matrix. Equal
    scores rank the earlier-added item first. Keys need not be unique (e.g. several
    captions of one image).
    """

    backend = "exact"
    kind = "flat"

    def __init__(
        self,
        dim: int,
        normalize: bool = True,
        block_size: int = 16384,
        query_block_size: int = 1024,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise IndexError_(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.normalize = normalize
        self.block_size = block_size
        self.query_block_size = query_block_size
        self._vectors = torch.zeros(0, dim)
        self.keys: list[str] = []
        self.metadata: list[dict[str, Any] | None] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def vectors(self) -> Tensor:
        """The stored ``[N, D]`` float32 vectors (normalized when ``normalize``)."""
        return self._vectors

    @property
    def device(self) -> torch.device:
        return self._vectors.device

    def nbytes(self) -> int:
        """Bytes the index holds for its vectors and search structures (not keys or
        metadata): ``4 N D`` here."""
        return self._vectors.numel() * self._vectors.element_size()

    def to(self, device: str | torch.device) -> ExactIndex:
        """Move the vectors (and so the search) to ``device``; returns ``self``."""
        self._vectors = self._vectors.to(device)
        return self

    def _prepare(self, embeddings: Tensor | np.ndarray, what: str) -> Tensor:
        """Check ``[n, D]``, finite; float32 on its own device; normalized if asked."""
        embeddings = torch.as_tensor(embeddings).detach()
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise IndexError_(f"{what} must be [n, {self.dim}], got {tuple(embeddings.shape)}")
        embeddings = embeddings.to(torch.float32)
        if not bool(torch.isfinite(embeddings).all()):
            raise IndexError_(f"{what} contain NaN or infinite values")
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def add(
        self,
        embeddings: Tensor | np.ndarray,
        keys: list[str],
        metadata: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Append ``embeddings [n, D]`` with ``n`` keys and optional ``n`` metadata dicts.

        New items get the next indices (``len(self)`` onwards), also after ``load``.
        """
        embeddings = self._prepare(embeddings, "embeddings")
        if len(keys) != embeddings.shape[0]:
            raise IndexError_(f"{embeddings.shape[0]} vectors but {len(keys)} keys")
        if metadata is not None and len(metadata) != len(keys):
            raise IndexError_(f"{len(keys)} keys but {len(metadata)} metadata entries")
        bad = next((m for m in metadata or [] if m is not None and not isinstance(m, dict)), None)
        if bad is not None:
            raise IndexError_(f"metadata entries must be dicts or None, got {type(bad).__name__}")
        self._store(embeddings)
        self.keys.extend(str(k) for k in keys)
        self.metadata.extend(metadata if metadata is not None else [None] * len(keys))

    def _store(self, embeddings: Tensor) -> None:
        """Append checked ``embeddings [n, D]`` to the vectors searched."""
        if len(self) == 0:
            self._vectors = embeddings.clone()  # never alias the caller's tensor
        else:
            self._vectors = torch.cat([self._vectors, embeddings.to(self.device)])

    def _check_search(self, queries: Tensor | np.ndarray, k: int) -> Tensor:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise IndexError_(f"k must be an integer >= 1, got {k!r}")
        if not self.keys:
            raise IndexError_("the index is empty; add vectors before searching")
        return self._prepare(queries, "queries")

    def search(self, queries: Tensor | np.ndarray, k: int) -> SearchResult:
        """The ``min(k, len)`` best items for each of ``queries [Q, D]``: ``[Q, k]`` results."""
        queries = self._check_search(queries, k).to(self.device)
        scores, indices = blockwise_topk(
            queries, self.vectors, k, self.block_size, self.query_block_size
        )
        return SearchResult(scores, indices, self.keys, self.metadata)

    def manifest(self) -> dict[str, Any]:
        """What ``manifest.json`` records about this index."""
        return {
            "backend": self.backend,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            "dtype": "float32",
            "normalize": self.normalize,
        }

    def _save_files(self, directory: Path) -> None:
        atomic_save_npy(directory / VECTORS, self.vectors.cpu().numpy())
        try:
            write_items(directory, self.keys, self.metadata)
        except TypeError as err:
            raise IndexError_(f"metadata must be JSON-serializable: {err}") from None

    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (created if needed; manifest written last)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        write_manifest(directory, self.manifest())
        logger.info("saved %s index with %d items to %s", self.backend, len(self), directory)

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any]) -> ExactIndex:
        return cls(manifest["dim"], normalize=bool(manifest.get("normalize", True)))

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> Any:
        """Open an index written by ``save`` (vectors on ``device``, default CPU)."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest["backend"] != cls.backend:
            raise IndexError_(
                f"{directory}: backend {manifest['backend']!r}, expected {cls.backend!r} "
                "(use retrievalkit.index.load_index to open any backend)"
            )
        index = cls._from_manifest(manifest)
        count = manifest["count"]
        index.keys, index.metadata = read_items(directory, count)
        index._load_files(directory, manifest)
        return index.to(device) if device is not None else index

    def _load_files(self, directory: Path, manifest: dict[str, Any]) -> None:
        """The backend's search data (here ``vectors.npy``; the items are read already)."""
        vectors = read_vectors(directory, manifest["count"], self.dim)
        self._vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
