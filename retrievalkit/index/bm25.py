"""Okapi BM25 keyword search: the baseline the learned emoji model must beat.

``score(q, d) = sum_{t in q} idf(t) * f(t, d) (k1 + 1) / (f(t, d) + k1 (1 - b + b |d| / avgdl))``
with ``idf(t) = log((N - df(t) + 0.5) / (df(t) + 0.5) + 1)`` (never negative).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

from retrievalkit.index.base import Hit

_WORD = re.compile(r"[a-z0-9]+")


def word_tokens(text: str) -> list[str]:
    """Lowercase alphanumeric words."""
    return _WORD.findall(text.lower())


class BM25Index:
    """BM25 over ``docs`` (strings) with one key per document."""

    def __init__(
        self,
        docs: Sequence[str],
        keys: Sequence[str],
        k1: float = 1.5,
        b: float = 0.75,
        tokenizer: Callable[[str], list[str]] = word_tokens,
    ) -> None:
        if len(docs) != len(keys):
            raise ValueError(f"{len(docs)} documents but {len(keys)} keys")
        self.keys, self.k1, self.b, self.tokenizer = list(keys), k1, b, tokenizer
        self.term_counts = [Counter(tokenizer(doc)) for doc in docs]
        self.lengths = [sum(c.values()) for c in self.term_counts]
        self.avg_length = sum(self.lengths) / max(len(docs), 1)
        df = Counter(term for counts in self.term_counts for term in counts)
        n = len(docs)
        self.idf = {t: math.log((n - d + 0.5) / (d + 0.5) + 1.0) for t, d in df.items()}

    def scores(self, query: str) -> list[float]:
        """BM25 score of every document for ``query``."""
        terms = self.tokenizer(query)
        out = []
        for counts, length in zip(self.term_counts, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg_length)
            score = 0.0
            for term in terms:
                f = counts.get(term, 0)
                if f:
                    score += self.idf[term] * f * (self.k1 + 1) / (f + norm)
            out.append(score)
        return out

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """Top ``k`` documents with a positive score (ties: document order)."""
        scored = [(s, i) for i, s in enumerate(self.scores(query)) if s > 0]
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [Hit(rank, s, self.keys[i], None) for rank, (s, i) in enumerate(scored[:k], start=1)]
