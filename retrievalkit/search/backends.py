"""The index behind one side of an index directory: exact, FAISS or Milvus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrievalkit.errors import InputError


def new_index(backend: str, dim: int, directory: Path, options: dict[str, Any]) -> Any:
    """An empty index for ``directory`` (one side). ``options`` (milvus): ``uri`` (a
    server, or a milvus-lite file; default ``directory/milvus.db``) and ``collection``
    (a prefix; the side's name is appended)."""
    from retrievalkit.index import ExactIndex, FaissIndex, IndexError_, MilvusIndex

    if backend == "exact":
        return ExactIndex(dim)
    if backend.startswith("faiss"):
        kind = backend.partition("-")[2] or "flat"
        return FaissIndex(dim, kind=kind)
    if backend == "milvus":
        uri = options.get("uri") or str(directory / "milvus.db")
        collection = f"{options.get('collection') or 'retrievalkit'}_{directory.name}"
        index = MilvusIndex(dim, uri, collection)
        if len(index):
            raise IndexError_(
                f"Milvus collection {collection!r} at {uri} already holds {len(index)} items; "
                "choose another --collection, or add to it with MilvusIndex.add / upsert"
            )
        return index
    raise InputError(
        f"unknown index backend {backend!r}; use exact, faiss, faiss-ivf, faiss-hnsw, milvus"
    )
