"""Search: index directories of a trained model's embeddings, and answering queries.

``index_dir``: write an index directory (model copy, manifest, one index per side).
``backends``: the index behind a side (exact, FAISS, Milvus) and its rules.
``ranking``: hits, one hit per key, and the fusion of image and caption scores.
``engine``: :class:`SearchEngine`, the reader the CLI, the API and the service share.
``quality``: hit@5 / MRR@5 of the engine's rankings and BM25 on a typed query set.

Layer: above ``pipeline`` (model loading, embedding) and ``index``; below the front
ends. Nothing under ``train`` or the front ends is imported here.
"""

from retrievalkit.search.engine import SearchEngine
from retrievalkit.search.index_dir import MANIFEST, build_index_dir
from retrievalkit.search.ranking import DEFAULT_IMAGE_WEIGHT, SearchHit

__all__ = ["DEFAULT_IMAGE_WEIGHT", "MANIFEST", "SearchEngine", "SearchHit", "build_index_dir"]
