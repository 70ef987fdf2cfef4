"""Milvus-backed index (pymilvus): the vectors live in a Milvus collection.
(Over 300 lines on purpose: one backend class, the index contract of ``base.py``.)

``uri`` is either a local file path ending in ``.db``, which runs the embedded
milvus-lite engine in this process (tests, small deployments), or a server URI
(``http://host:19530``) of a Milvus cluster; the code is the same. A token for a
secured server is read from the ``MILVUS_TOKEN`` environment variable, never
written to disk.

One collection per index, fields ``id`` (INT64 primary key: the item's position),
``vector`` (FLOAT_VECTOR, inner product), ``key`` and ``metadata`` (JSON text), so
results carry the same keys and metadata as the exact and FAISS backends. The
index directory holds only ``manifest.json`` (backend ``milvus``, uri, collection,
dim, count) and, for milvus-lite, the ``.db`` file when it was put there. Opening
an existing collection checks its dimension; adding to it continues after its
largest id; :meth:`MilvusIndex.upsert` replaces the rows with the given ids
(loading a shard twice does not duplicate it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retrievalkit.index.base import IndexError_, SearchResult, read_manifest, write_manifest

KEY_MAX = 2048
METADATA_MAX = 65535
INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def _client(uri: str, timeout: float) -> Any:
    """A connected ``MilvusClient``; a one-line :class:`IndexError_` when it cannot be."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise IndexError_(
            "the milvus backend needs pymilvus and milvus-lite: pip install 'retrievalkit[milvus]'"
        ) from None
    token = os.environ.get("MILVUS_TOKEN", "")
    try:
        return MilvusClient(uri=uri, token=token, timeout=timeout)
    except Exception as err:  # pymilvus raises its own MilvusException or grpc errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IndexError_(f"cannot reach Milvus at {uri}: {first}") from None


def _is_local(uri: str) -> bool:
    return "://" not in uri


class MilvusIndex:
    """Top-k by inner product in a Milvus collection; the API of :class:`ExactIndex`.

    Args:
        dim: vector dimension (checked against an existing collection).
        uri: a ``.db`` file (milvus-lite) or a server URI.
        collection: collection name (letters, digits, ``_``).
        normalize: L2-normalize added vectors and queries (cosine scores).
        index_type: Milvus index type; ``FLAT`` is exact (the default).
        timeout: seconds to wait for the server.
    """

    backend = "milvus"

    def __init__(
        self,
        dim: int,
        uri: str,
        collection: str,
        normalize: bool = True,
        index_type: str = "FLAT",
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise IndexError_(f"dim must be a positive integer, got {dim!r}")
        if not _NAME.match(collection):
            raise IndexError_(
                f"collection name {collection!r}: use letters, digits and _ (not first a digit)"
            )
        if index_type not in INDEX_TYPES:
            raise IndexError_(f"index_type {index_type!r}: use one of {', '.join(INDEX_TYPES)}")
        if _is_local(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.dim, self.uri, self.collection = dim, uri, collection
        self.normalize, self.kind = normalize, index_type.lower()
        self.index_type = index_type
        self.client = _client(uri, timeout)
        if self.client.has_collection(collection):
            existing = self._collection_dim()
            if existing != dim:
                raise IndexError_(
                    f"Milvus collection {collection!r} at {uri} has dim {existing}, "
                    f"the embeddings have dim {dim}"
                )
        else:
            self._create()
        self.client.load_collection(collection)

    # -- collection ---------------------------------------------------------------
    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("key", DataType.VARCHAR, max_length=KEY_MAX)
        schema.add_field("metadata", DataType.VARCHAR, max_length=METADATA_MAX)
        params = self.client.prepare_index_params()
        params.add_index("vector", index_type=self.index_type, metric_type="IP")
        self.client.create_collection(self.collection, schema=schema, index_params=params)

    def _collection_dim(self) -> int:
        info = self.client.describe_collection(self.collection)
        for field in info.get("fields", []):
            if field.get("name") == "vector":
                return int(field.get("params", {}).get("dim", -1))
        raise IndexError_(f"Milvus collection {self.collection!r} has no 'vector' field")

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _next_id(self) -> int:
        """One past the largest id (0 when empty)."""
        if len(self) == 0:
            return 0
        largest = -1
        for batch in self._iterate(["id"]):
            largest = max(largest, *(int(row["id"]) for row in batch))
        return largest + 1

    def _iterate(self, fields: list[str], batch_size: int = 4096) -> Any:
        """Every row's ``fields``, in batches (a query iterator: no size limit)."""
        iterator = self.client.query_iterator(
            self.collection, batch_size=batch_size, filter="", output_fields=fields
        )
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    # -- items --------------------------------------------------------------------
    def _prepare(self, embeddings: Tensor | np.ndarray, what: str) -> np.ndarray:
        array = torch.as_tensor(embeddings).detach().to(torch.float32).cpu()
        if array.dim() != 2 or array.shape[1] != self.dim:
            raise IndexError_(f"{what} must be [n, {self.dim}], got {tuple(array.shape)}")
        if not bool(torch.isfinite(array).all()):
            raise IndexError_(f"{what} contain NaN or infinite values")
        return (F.normalize(array, dim=1) if self.normalize else array).numpy()

    def _rows(
        self,
        embeddings: Tensor | np.ndarray,
        keys: list[str],
        metadata: list[dict[str, Any] | None] | None,
        ids: list[int],
    ) -> list[dict[str, Any]]:
        vectors = self._prepare(embeddings, "embeddings")
        if len(keys) != vectors.shape[0]:
            raise IndexError_(f"{vectors.shape[0]} vectors but {len(keys)} keys")
        metadata = metadata if metadata is not None else [None] * len(keys)
        if len(metadata) != len(keys):
            raise IndexError_(f"{len(keys)} keys but {len(metadata)} metadata entries")
        rows = []
        for row_id, vector, key, meta in zip(ids, vectors, keys, metadata, strict=True):
            if meta is not None and not isinstance(meta, dict):
                raise IndexError_(f"metadata entries must be dicts or None, got {type(meta)}")
            text = json.dumps(meta, ensure_ascii=False)
            if len(str(key)) > KEY_MAX or len(text) > METADATA_MAX:
                raise IndexError_(f"item {key!r}: key or metadata too long for Milvus")
            rows.append(
                {"id": int(row_id), "vector": vector.tolist(), "key": str(key), "metadata": text}
            )
        return rows

    def add(
        self,
        embeddings: Tensor | np.ndarray,
        keys: list[str],
        metadata: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Append ``embeddings [n, D]`` with keys and metadata after the largest id."""
        start = self._next_id()
        ids = list(range(start, start + len(keys)))
        self._write(self.client.insert, self._rows(embeddings, keys, metadata, ids))

    def upsert(
        self,
        embeddings: Tensor | np.ndarray,
        keys: list[str],
        ids: list[int],
        metadata: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Insert rows with the given ids ``[n]``, replacing any row with the same id."""
        self._write(self.client.upsert, self._rows(embeddings, keys, metadata, ids))

    def _write(self, method: Any, rows: list[dict[str, Any]], batch: int = 2048) -> None:
        for start in range(0, len(rows), batch):
            method(self.collection, rows[start : start + batch])
        self.client.flush(self.collection)

    @property
    def keys(self) -> list[str]:
        """Every key in id order (reads the whole collection: for small indexes)."""
        return [key for key, _ in self._all_items()]

    @property
    def metadata(self) -> list[dict[str, Any] | None]:
        """Every item's metadata in id order (reads the whole collection)."""
        return [meta for _, meta in self._all_items()]

    def _all_items(self) -> list[tuple[str, dict[str, Any] | None]]:
        rows = [row for batch in self._iterate(["id", "key", "metadata"]) for row in batch]
        rows.sort(key=lambda row: int(row["id"]))
        return [(row["key"], json.loads(row["metadata"])) for row in rows]

    # -- search -------------------------------------------------------------------
    def to(self, device: str | torch.device) -> MilvusIndex:
        if torch.device(device).type != "cpu":
            raise IndexError_(f"a Milvus index is searched by Milvus, not on {device}")
        return self

    def search(self, queries: Tensor | np.ndarray, k: int) -> SearchResult:
        """The ``min(k, len)`` best items per query; ``indices`` point into the
        result's own ``item_keys`` / ``item_metadata`` (the items found)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise IndexError_(f"k must be an integer >= 1, got {k!r}")
        total = len(self)
        if total == 0:
            raise IndexError_("the index is empty; add vectors before searching")
        vectors = self._prepare(queries, "queries")
        k = min(k, total)
        found = self.client.search(
            self.collection,
            data=vectors.tolist(),
            limit=k,
            output_fields=["key", "metadata"],
            search_params={"metric_type": "IP"},
        )
        scores = torch.full((len(vectors), k), -torch.inf)
        indices = torch.full((len(vectors), k), -1, dtype=torch.long)
        position: dict[int, int] = {}
        keys: list[str] = []
        metadata: list[dict[str, Any] | None] = []
        for q, hits in enumerate(found):
            for rank, hit in enumerate(hits):
                row_id = int(hit["id"])
                if row_id not in position:
                    position[row_id] = len(keys)
                    keys.append(hit["entity"]["key"])
                    metadata.append(json.loads(hit["entity"]["metadata"]))
                scores[q, rank] = float(hit["distance"])
                indices[q, rank] = position[row_id]
        return SearchResult(scores, indices, keys, metadata)

    # -- persistence --------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            "normalize": self.normalize,
            "uri": self.uri,
            "collection": self.collection,
            "index_type": self.index_type,
        }

    def save(self, directory: str | Path) -> None:
        """Write ``manifest.json``; a milvus-lite file inside ``directory`` is recorded
        relative to it, so the directory can be moved."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        if _is_local(self.uri):
            path = Path(self.uri).resolve()
            if path.parent == directory.resolve():
                manifest["uri"] = path.name
        write_manifest(directory, manifest)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> MilvusIndex:
        """Open the collection a saved manifest names (its dimension is checked; the count
        may have grown since, e.g. other processes adding shards)."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest["backend"] != cls.backend:
            raise IndexError_(f"{directory}: backend {manifest['backend']!r}, expected 'milvus'")
        for field in ("uri", "collection"):
            if not isinstance(manifest.get(field), str):
                raise IndexError_(f"{directory / 'manifest.json'}: missing string field {field!r}")
        uri = manifest["uri"]
        if _is_local(uri) and not Path(uri).is_absolute():
            uri = str(directory / uri)
        if _is_local(uri) and not Path(uri).exists():
            raise IndexError_(f"{uri}: the milvus-lite file of {directory} is missing")
        index = cls(
            manifest["dim"],
            uri,
            manifest["collection"],
            normalize=bool(manifest.get("normalize", True)),
            index_type=str(manifest.get("index_type", "FLAT")),
        )
        return index.to(device) if device is not None else index

    def close(self) -> None:
        """Close the connection (milvus-lite stops its engine when the last one closes)."""
        self.client.close()
