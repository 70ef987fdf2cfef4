"""Similarity and top-k search over any embeddings, as sentence-transformers' ``util``
spells them: ``similarity(a, b)`` (cosine, ``[N, M]``) and
``semantic_search(query_embeddings, corpus_embeddings, top_k)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retrievalkit.errors import InputError


def _as_matrix(embeddings: Any, name: str) -> Tensor:
    """numpy / tensor / nested list ``[E]`` or ``[N, E]`` -> float tensor ``[N, E]``."""
    tensor = (
        embeddings if isinstance(embeddings, Tensor) else torch.as_tensor(np.asarray(embeddings))
    )
    if tensor.dim() == 1:
        tensor = tensor[None]
    if tensor.dim() != 2:
        raise InputError(
            f"{name}: expected embeddings [E] or [N, E], got shape {tuple(tensor.shape)}"
        )
    return tensor.float()


def similarity(a: Any, b: Any) -> np.ndarray | Tensor:
    """Cosine similarity of every row of ``a [N, E]`` with every row of ``b [M, E]``:
    ``[N, M]`` (a 1-D input is one row). numpy in, numpy out; a tensor in, a tensor out."""
    left = _as_matrix(a, "a")
    right = _as_matrix(b, "b").to(left.device)
    if left.shape[1] != right.shape[1]:
        raise InputError(f"a has {left.shape[1]} dimensions, b has {right.shape[1]}")
    scores = F.normalize(left, dim=1) @ F.normalize(right, dim=1).T
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return scores
    return scores.cpu().numpy()


def semantic_search(
    query_embeddings: Any,
    corpus_embeddings: Any,
    top_k: int = 10,
    query_chunk_size: int = 100,
) -> list[list[dict[str, float | int]]]:
    """The ``top_k`` corpus rows closest to each query by cosine similarity: one list
    per query of ``{"corpus_id": int, "score": float}``, best first (ties: lower id),
    as ``sentence_transformers.util.semantic_search`` returns them. ``[E]`` is one query.
    """
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    queries = _as_matrix(query_embeddings, "query_embeddings")
    corpus = F.normalize(_as_matrix(corpus_embeddings, "corpus_embeddings"), dim=1)
    if queries.shape[1] != corpus.shape[1]:
        raise InputError(
            f"queries have {queries.shape[1]} dimensions, the corpus {corpus.shape[1]}"
        )
    k = min(top_k, corpus.shape[0])
    results = []
    for start in range(0, queries.shape[0], query_chunk_size):
        chunk = F.normalize(queries[start : start + query_chunk_size], dim=1).to(corpus.device)
        scores, ids = torch.topk(chunk @ corpus.T, k, dim=1, sorted=True)
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            pairs = sorted(zip(row_scores, row_ids, strict=True), key=lambda p: (-p[0], p[1]))
            results.append([{"corpus_id": i, "score": s} for s, i in pairs])
    return results
