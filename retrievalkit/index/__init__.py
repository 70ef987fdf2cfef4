"""Indexes (exact torch, FAISS, Milvus) with keys and metadata; BM25 baseline.

Flat (exact) search is the default below about a million items; measure what an
approximate FAISS index (IVF/HNSW) loses with ``ann_recall``, per query direction.
"""

from pathlib import Path
from types import MappingProxyType

import torch

from retrievalkit.index.base import Hit, IndexError_, SearchResult, read_manifest
from retrievalkit.index.bm25 import BM25Index, word_tokens
from retrievalkit.index.exact import ExactIndex
from retrievalkit.index.faiss_index import FaissIndex, ann_recall, overlap_recall
from retrievalkit.index.milvus_index import MilvusIndex
from retrievalkit.index.topk import blockwise_topk

BACKENDS: MappingProxyType[str, type[ExactIndex] | type[MilvusIndex]] = MappingProxyType(
    {"exact": ExactIndex, "faiss": FaissIndex, "milvus": MilvusIndex}
)


def load_index(
    directory: str | Path, device: str | torch.device | None = None
) -> ExactIndex | MilvusIndex:
    """Open an index directory with the backend its ``manifest.json`` names."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    backend = BACKENDS.get(manifest["backend"])
    if backend is None:
        raise IndexError_(
            f"{directory / 'manifest.json'}: unknown backend {manifest['backend']!r}; "
            f"expected one of {', '.join(BACKENDS)}"
        )
    return backend.load(directory, device=device)


__all__ = [
    "BACKENDS",
    "BM25Index",
    "ExactIndex",
    "FaissIndex",
    "Hit",
    "IndexError_",
    "MilvusIndex",
    "SearchResult",
    "ann_recall",
    "blockwise_topk",
    "load_index",
    "overlap_recall",
    "word_tokens",
]
