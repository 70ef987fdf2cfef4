"""retrievalkit: learn, evaluate and serve embeddings for retrieval.

``import retrievalkit as rk`` is light (nothing heavy is imported until used):

- ``rk.load(run_dir)``: a trained model with its preprocessing
  (``encode_text``, ``encode_image`` -> numpy arrays, sentence-transformers' keywords);
- ``rk.similarity(a, b)``, ``rk.semantic_search(query_emb, corpus_emb, top_k)``:
  cosine scores and top-k search over any embeddings;
- ``rk.SearchEngine(index_dir)``: search an index directory;
- ``rk.train(recipe, out=..., overrides=[...])``: train a recipe;
- ``rk.losses``, ``rk.eval`` (metrics), ``rk.models``, ``rk.data``, ``rk.index``:
  the parts, also importable as ``retrievalkit.losses`` (needs only torch) etc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {"load", "SearchEngine", "Encoder", "similarity", "semantic_search", "train"}
_SUBMODULES = {
    "losses",
    "eval",
    "models",
    "data",
    "index",
    "pipeline",
    "search",
    "run",
    "serve",
    "training",
}

if TYPE_CHECKING:
    from retrievalkit.api import Encoder, SearchEngine, load, semantic_search, similarity, train

__all__ = [
    "Encoder",
    "SearchEngine",
    "__version__",
    "load",
    "semantic_search",
    "similarity",
    "train",
]


def __getattr__(name: str) -> Any:
    """Import the API and the sub-packages on first use (PEP 562)."""
    if name in _API:
        return getattr(importlib.import_module("retrievalkit.api"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"retrievalkit.{name}")
    raise AttributeError(f"module 'retrievalkit' has no attribute {name!r}")
