"""Initialise word embeddings from a local word2vec/GloVe text file (no download)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def load_word_vectors(embedding: nn.Embedding, words: list[str], path: str | Path) -> float:
    """Copy vectors of known words into ``embedding`` (row i = ``words[i]``).

    The file has one ``word v1 v2 ... vD`` per line; a word2vec header line
    ``N D`` is skipped. Words without a vector keep their random init. Returns the
    fraction of ``words`` found (also logged).
    """
    path = Path(path)
    index = {w: i for i, w in enumerate(words)}
    dim = embedding.embedding_dim
    found = 0
    with torch.no_grad(), open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{path}:{line_number}: {len(parts) - 1} numbers, expected {dim} "
                    "(the embedding size) after the word"
                )
            row = index.get(parts[0])
            if row is None:
                continue
            try:
                embedding.weight[row] = torch.tensor([float(x) for x in parts[1:]])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: not a number in the vector") from None
            found += 1
    coverage = found / max(len(words), 1)
    log.info("word vectors %s: %d of %d words (%.1f%%)", path, found, len(words), 100 * coverage)
    return coverage
