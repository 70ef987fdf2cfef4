"""Okapi BM25 keyword search: the baseline the learned emoji model must beat.

``score(q, d) = sum_{t in q} idf(t) * f(t, d) (k1 + 1) / (f(t, d) + k1 (1 - b + b |d| / avgdl))``
with ``idf(t) = log((N - df(t) + 0.5) / (df(t) + 0.5) + 1)`` (never negative).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from retrievalkit.index.base import Hit

_WORD = re.compile(r"[^\W_]+")


def word_tokens(text: str) -> list[str]:
    """Lowercase words: runs of Unicode letters and digits ("piñata", "1st", "o", "clock")."""
    return _WORD.findall(text.lower())


class BM25Index:
    """Okapi BM25 over ``docs`` (strings), one key per document.

    ``tokenizer`` splits documents and queries alike (default: lowercase
    alphanumeric words, no stop-word list). A query term repeated counts again,
    as in ``rank_bm25``. Only documents sharing a term with the query score above 0.
    """

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
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.keys, self.k1, self.b, self.tokenizer = list(keys), k1, b, tokenizer
        term_counts = [Counter(tokenizer(doc)) for doc in docs]
        self.lengths = [sum(c.values()) for c in term_counts]
        self.avg_length = (sum(self.lengths) / len(docs) if docs else 0.0) or 1.0
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for doc, counts in enumerate(term_counts):
            for term, count in counts.items():
                self.postings.setdefault(term, []).append((doc, count))
        n = len(docs)
        self.idf = {
            term: math.log((n - len(p) + 0.5) / (len(p) + 0.5) + 1.0)
            for term, p in self.postings.items()
        }

    @classmethod
    def from_texts(cls, texts: Mapping[str, str | Sequence[str]], **options: object) -> BM25Index:
        """One document per key; a list of phrases (e.g. an emoji's CLDR name and
        keywords) is joined into one document. ``options`` go to the constructor."""
        docs = [t if isinstance(t, str) else " ; ".join(t) for t in texts.values()]
        return cls(docs, list(texts), **options)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.keys)

    def scores(self, query: str) -> list[float]:
        """BM25 score of every document for ``query`` (``len(self)`` floats)."""
        out = [0.0] * len(self.keys)
        for term in self.tokenizer(query):
            for doc, f in self.postings.get(term, ()):
                norm = self.k1 * (1 - self.b + self.b * self.lengths[doc] / self.avg_length)
                out[doc] += self.idf[term] * f * (self.k1 + 1) / (f + norm)
        return out

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """Top ``k`` documents with a score above 0, best first (ties: document order)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        scored = [(s, i) for i, s in enumerate(self.scores(query)) if s > 0]
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [Hit(rank, s, self.keys[i], None) for rank, (s, i) in enumerate(scored[:k], start=1)]
