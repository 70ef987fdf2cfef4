"""retrievalkit: learn, evaluate and serve embeddings for retrieval.

Import the parts you need: ``retrievalkit.losses`` (needs only torch),
``retrievalkit.eval``, ``retrievalkit.models``, ``retrievalkit.data``,
``retrievalkit.train``, ``retrievalkit.index``, ``retrievalkit.serve``.
"""

__version__ = "0.1.0"
