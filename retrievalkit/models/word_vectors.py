"""Initialise word embeddings from a local word2vec/GloVe text file (no download)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _check_dim(path: Path, line_number: int, got: int, dim: int) -> None:
    if got != dim:
        raise ValueError(
            f"{path}:{line_number}: vectors of size {got}, expected {dim} "
            "(the word embedding size, word_dim)"
        )


def load_word_vectors(embedding: nn.Embedding, words: list[str], path: str | Path) -> float:
    """Copy vectors of known words into ``embedding.weight [V, D]`` (row i = ``words[i]``).

    The file has one ``word v1 v2 ... vD`` per line (GloVe, or word2vec text format
    whose first line ``N D`` is skipped). The last ``D`` fields are the vector, the
    rest is the word, so GloVe entries containing spaces are read whole. Words
    without a vector keep their random init; the padding row is never overwritten.
    Returns the fraction of ``words`` found (also logged at INFO).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: word vector file not found")
    index = {w: i for i, w in enumerate(words)}
    dim = embedding.embedding_dim
    found: set[int] = set()
    checked = False
    with torch.no_grad(), open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_number == 1 and _is_header(parts):
                _check_dim(path, line_number, int(parts[1]), dim)
                checked = True
                continue
            if parts == [""]:
                continue
            if not checked:  # the first vector fixes the file's size (words may hold spaces)
                _check_dim(path, line_number, len(parts) - 1, dim)
                checked = True
            if len(parts) < dim + 1:
                _check_dim(path, line_number, len(parts) - 1, dim)
            row = index.get(" ".join(parts[:-dim]))
            if row is None or row == embedding.padding_idx:
                continue
            try:
                vector = torch.tensor([float(x) for x in parts[-dim:]])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: not a number in the vector") from None
            embedding.weight[row] = vector.to(embedding.weight)
            found.add(row)
    coverage = len(found) / max(len(words), 1)
    log.info(
        "word vectors %s: %d of %d vocabulary words found (%.1f%% coverage)",
        path,
        len(found),
        len(words),
        100 * coverage,
    )
    return coverage
