"""Indexes (exact torch, FAISS) with keys and metadata; BM25 baseline; query sets."""

from pathlib import Path

from retrievalkit.index.base import Hit, IndexError_, SearchResult, read_manifest
from retrievalkit.index.exact import ExactIndex, blockwise_topk
from retrievalkit.index.faiss_index import FaissIndex, ann_recall


def load_index(directory: str | Path) -> ExactIndex:
    """Open an index directory with the backend its manifest names."""
    manifest = read_manifest(Path(directory))
    if manifest.get("backend") == "faiss":
        return FaissIndex.load(directory)
    if manifest.get("backend") == "exact":
        return ExactIndex.load(directory)
    raise IndexError_(f"{directory}: unknown backend {manifest.get('backend')!r}")


__all__ = [
    "ExactIndex",
    "FaissIndex",
    "Hit",
    "IndexError_",
    "SearchResult",
    "ann_recall",
    "blockwise_topk",
    "load_index",
]
