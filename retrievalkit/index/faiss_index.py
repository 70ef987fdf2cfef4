"""FAISS-backed index (inner product): ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate).

Same API as :class:`ExactIndex`. The vectors live only inside the FAISS index
(no second torch copy: 4 D bytes per item for flat, plus the lists' ids for IVF
and the graph links for HNSW; ``nbytes``); ``vectors`` and ``save`` (which also
writes the common ``vectors.npy``) reconstruct them from it. The index can be
saved, reloaded, extended and its recall measured against exact search
(``ann_recall``). Below about a million items the flat/exact index is the
default: an approximate index trades recall for speed, and the loss can differ
per direction (text->image vs image->image), so measure it on your queries.
FAISS runs on CPU: vectors and results live on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.index.base import IndexError_, SearchResult
from retrievalkit.index.exact import ExactIndex

FAISS_FILE = "faiss.index"
KINDS = ("flat", "ivf", "hnsw")


class FaissIndex(ExactIndex):
    """``kind``: "flat" (exact), "ivf" (``nlist`` lists, ``nprobe`` probed per query;
    trained on the vectors of the first ``add``, which must number at least
    ``nlist``) or "hnsw" (``hnsw_m`` links per node, ``ef_search`` candidates)."""

    backend = "faiss"

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        nlist: int = 1024,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
        normalize: bool = True,
    ) -> None:
        super().__init__(dim, normalize=normalize)
        if kind not in KINDS:
            raise IndexError_(f"unknown faiss kind {kind!r}; use one of {', '.join(KINDS)}")
        for name, value in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m)):
            if not isinstance(value, int) or value < 1:
                raise IndexError_(f"{name} must be a positive integer, got {value!r}")
        self.kind, self.nlist, self.nprobe = kind, nlist, nprobe
        self.hnsw_m, self.ef_search = hnsw_m, ef_search
        self._faiss: Any = None

    @property
    def vectors(self) -> Tensor:
        """``[N, D]`` float32, reconstructed from the FAISS index (a new copy each call)."""
        if self._faiss is None or len(self) == 0:
            return torch.zeros(0, self.dim)
        # a tensor already if faiss.contrib.torch_utils was imported, else an array
        return torch.as_tensor(self._faiss.reconstruct_n(0, self._faiss.ntotal))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def nbytes(self) -> int:
        """Bytes of the FAISS index's own structures: the vectors (``4 D`` per item),
        plus ids and centroids (IVF) or graph links (HNSW)."""
        return 0 if self._faiss is None else faiss_nbytes(self._faiss)

    def to(self, device: str | torch.device) -> FaissIndex:
        if torch.device(device).type != "cpu":
            raise IndexError_(f"a faiss index runs on the CPU, not on {device}")
        return self

    def _set_search_params(self) -> None:
        if self.kind == "ivf":
            self._faiss.nprobe = self.nprobe
        elif self.kind == "hnsw":
            self._faiss.hnsw.efSearch = self.ef_search

    def _build(self, vectors: np.ndarray) -> Any:
        import faiss

        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            if vectors.shape[0] < self.nlist:
                raise IndexError_(
                    f"an IVF index with nlist={self.nlist} is trained on the first add and needs "
                    f"at least {self.nlist} vectors, got {vectors.shape[0]}; add more at once, "
                    "lower nlist, or use kind='flat'"
                )
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        return index

    def _store(self, embeddings: Tensor) -> None:
        """Add checked ``embeddings [n, D]`` to the FAISS index (built, and for IVF
        trained, on the first add)."""
        new = np.ascontiguousarray(embeddings.cpu().numpy())
        faiss_index = self._faiss if self._faiss is not None else self._build(new)
        faiss_index.add(new)
        self._faiss = faiss_index
        self._set_search_params()

    def search(self, queries: Tensor | np.ndarray, k: int) -> SearchResult:
        """Top ``min(k, len)`` per query; IVF may leave slots empty (index -1, score -inf)."""
        queries = self._check_search(queries, k).cpu()
        scores, indices = self._faiss.search(
            np.ascontiguousarray(queries.numpy()), min(k, len(self))
        )
        scores_t, indices_t = torch.from_numpy(scores), torch.from_numpy(indices).long()
        scores_t[indices_t < 0] = -torch.inf
        return SearchResult(scores_t, indices_t, self.keys, self.metadata)

    def manifest(self) -> dict[str, Any]:
        return {
            **super().manifest(),
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
        }

    def _save_files(self, directory: Path) -> None:
        import faiss

        super()._save_files(directory)
        if self._faiss is not None:
            tmp = directory / (FAISS_FILE + ".tmp")
            faiss.write_index(self._faiss, str(tmp))
            tmp.replace(directory / FAISS_FILE)

    @classmethod
    def _from_manifest(cls, manifest: dict[str, Any]) -> FaissIndex:
        return cls(
            manifest["dim"],
            kind=manifest.get("kind", "flat"),
            nlist=manifest.get("nlist", 1024),
            nprobe=manifest.get("nprobe", 16),
            hnsw_m=manifest.get("hnsw_m", 32),
            ef_search=manifest.get("ef_search", 64),
            normalize=bool(manifest.get("normalize", True)),
        )

    def _load_files(self, directory: Path, manifest: dict[str, Any]) -> None:
        import faiss

        if manifest["count"] == 0:
            return
        path = directory / FAISS_FILE
        if not path.exists():
            raise IndexError_(f"{path}: missing")
        try:
            self._faiss = faiss.read_index(str(path))
        except RuntimeError as err:
            raise IndexError_(f"{path}: unreadable faiss index ({err})") from None
        if self._faiss.ntotal != manifest["count"] or self._faiss.d != self.dim:
            raise IndexError_(
                f"{path}: holds {self._faiss.ntotal} vectors of dim {self._faiss.d}, "
                f"manifest says {manifest['count']} of dim {self.dim}"
            )
        self._set_search_params()


def faiss_nbytes(index: Any) -> int:
    """Bytes held by a flat, IVF-flat or HNSW-flat FAISS index (its arrays; within a
    few hundred bytes of its serialized size)."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        links = graph.neighbors.size() * 4 + graph.levels.size() * 4 + graph.offsets.size() * 8
        return faiss_nbytes(index.storage) + links
    if isinstance(index, faiss.IndexIVF):
        lists = index.invlists.compute_ntotal() * (index.code_size + 8)  # codes + int64 ids
        return lists + faiss_nbytes(index.quantizer)
    return index.ntotal * index.code_size


def ann_recall(
    ann_index: ExactIndex, exact_index: ExactIndex, queries: Tensor | np.ndarray, k: int
) -> float:
    """Fraction of the exact top-``k`` (over all ``queries [Q, D]``) that ``ann_index`` finds.

    Both indexes must hold the same items in the same order. Run it once per query
    direction (e.g. text->image and image->image): recall can differ between them.
    """
    if len(ann_index) != len(exact_index):
        raise IndexError_(f"indexes differ in size: {len(ann_index)} vs {len(exact_index)}")
    exact = exact_index.search(queries, k).indices.cpu()
    if exact.numel() == 0:
        raise IndexError_("ann_recall needs at least one query")
    return overlap_recall(ann_index.search(queries, k).indices, exact)


def overlap_recall(approx: Tensor, exact: Tensor) -> float:
    """Fraction of the exact results ``exact [Q, k]`` (item indices) that the
    approximate ones ``approx [Q, k]`` contain, over all queries."""
    approx, exact = approx.cpu(), exact.cpu()
    found = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact, strict=True))
    return found / exact.numel()
