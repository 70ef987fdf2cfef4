"""Typed-query sets for judging search quality, and the hit-rate scorer.

TSV lines ``query<TAB>kind<TAB>targets``: kind is ``literal`` (shares a word with a
target's CLDR name/keywords) or ``paraphrase`` (shares none); targets are the
emoji (space-separated) that count as right. Lines starting with ``#`` are comments.

Every query belongs to one of two parts, ``dev`` (for choosing weights, epochs,
styles...) and ``test`` (reported only), by a salted hash of its text
(:func:`query_part`): a query never changes part when others are added. On
``benchmarks/emoji_queries.tsv`` (190 queries): dev 54 literal + 36 paraphrase,
test 51 literal + 49 paraphrase (the first salt tried; fixed before any tuning).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("literal", "paraphrase")
PARTS = ("dev", "test")
PART_SALT = "query-split|"


def query_part(text: str) -> str:
    """``"dev"`` or ``"test"``: the part of a query, from a salted SHA-1 of its text."""
    digest = hashlib.sha1((PART_SALT + text).encode("utf-8")).hexdigest()
    return PARTS[int(digest[:8], 16) % 2]


@dataclass(frozen=True)
class Query:
    """A typed query, its kind (literal/paraphrase) and the emoji that count as right."""

    text: str
    kind: str
    targets: tuple[str, ...]


def emoji_query_file() -> Path:
    """The emoji demo's typed-query set shipped inside the package
    (``retrievalkit/data/emoji_queries.tsv``; ``benchmarks/emoji_queries.tsv`` in the
    source tree links to it), so an installed package finds it too."""
    return Path(__file__).resolve().parent.parent / "data" / "emoji_queries.tsv"


def load_query_set(path: str | Path, part: str | None = None) -> list[Query]:
    """Read a query TSV; a malformed line raises ``ValueError`` naming file and line.

    Targets are stored without U+FE0F (the CLDR annotation ``cp`` form). ``part``
    (``"dev"`` or ``"test"``) keeps the queries of that part only; None keeps all.
    """
    if part is not None and part not in PARTS:
        raise ValueError(f"query part must be one of {PARTS} or None, got {part!r}")
    path = Path(path)
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{number}: expected query<TAB>kind<TAB>targets, got {line!r}")
        text, kind, targets = (p.strip() for p in parts)
        if kind not in KINDS:
            raise ValueError(f"{path}:{number}: kind {kind!r}, expected one of {KINDS}")
        target_list = tuple(t.replace("\ufe0f", "") for t in targets.split())
        if not text or not target_list:
            raise ValueError(f"{path}:{number}: empty query or no target")
        if part is None or query_part(text) == part:
            queries.append(Query(text, kind, target_list))
    if not queries:
        raise ValueError(f"{path}: no queries" + (f" in part {part!r}" if part else ""))
    return queries


def hit_rate_at_k(
    search: Callable[[str, int], Sequence[str]], queries: Sequence[Query], k: int = 5
) -> dict[str, Any]:
    """Per kind and overall: fraction of queries with a target in the top ``k`` and MRR@k.

    ``search(query, k)`` returns the keys of its top ``k`` results, best first
    (anything past ``k`` is ignored). Keys and targets are compared without
    U+FE0F, so fully- and minimally-qualified emoji match. Returns
    ``{"all" | kind: {"hit_rate", "mrr", "count"}}`` with rates as fractions.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not queries:
        raise ValueError("no queries to score")
    groups: dict[str, list[tuple[bool, float]]] = {"all": []}
    for query in queries:
        keys = [key.replace("\ufe0f", "") for key in search(query.text, k)][:k]
        rank = next((i for i, key in enumerate(keys, start=1) if key in query.targets), None)
        outcome = (rank is not None, 1.0 / rank if rank else 0.0)
        groups["all"].append(outcome)
        groups.setdefault(query.kind, []).append(outcome)
    return {
        kind: {
            "hit_rate": sum(hit for hit, _ in rows) / len(rows),
            "mrr": sum(rr for _, rr in rows) / len(rows),
            "count": len(rows),
        }
        for kind, rows in groups.items()
    }
