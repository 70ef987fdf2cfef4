"""The emoji query set: every target exists in CLDR, and the kind labels are true.

Rule (words = lowercase alphanumeric tokens, a trailing "s" stripped, stop words
ignored): a "literal" query shares a word with the CLDR name or keywords of at
least one target; a "paraphrase" query shares no word with any target's.
"""

from pathlib import Path

import pytest

from retrievalkit.index.bm25 import word_tokens
from retrievalkit.index.query_set import hit_rate_at_k, load_query_set

QUERIES = Path(__file__).resolve().parents[2] / "benchmarks" / "emoji_queries.tsv"
CLDR = Path("/usr/share/unicode/cldr/common/annotations/en.xml")
STOP_WORDS = {
    "a", "an", "the", "of", "i", "am", "so", "is", "are", "my", "to", "for", "in", "on",
    "and", "it", "me", "you", "us", "at", "with", "there", "let", "time", "very", "up",
}
needs_cldr = pytest.mark.skipif(not CLDR.exists(), reason="unicode-cldr-core is not installed")


def content_words(text: str) -> set[str]:
    return {w.removesuffix("s") for w in word_tokens(text) if w not in STOP_WORDS}


@pytest.fixture(scope="module")
def cldr_words() -> dict[str, set[str]]:
    from retrievalkit.data.emoji import read_annotations

    return {a.key: content_words(" ".join((a.name, *a.keywords))) for a in read_annotations()}


def test_query_set_size_and_kinds() -> None:
    queries = load_query_set(QUERIES)
    kinds = [q.kind for q in queries]
    assert len(queries) >= 100
    assert kinds.count("literal") >= 40 and kinds.count("paraphrase") >= 40


@needs_cldr
def test_targets_exist_in_cldr(cldr_words: dict[str, set[str]]) -> None:
    missing = [(q.text, t) for q in load_query_set(QUERIES) for t in q.targets if t not in cldr_words]
    assert not missing


@needs_cldr
def test_kind_labels_hold(cldr_words: dict[str, set[str]]) -> None:
    wrong = []
    for query in load_query_set(QUERIES):
        words = content_words(query.text)
        shared = {t: words & cldr_words[t] for t in query.targets if t in cldr_words}
        overlap = any(shared.values())
        if (query.kind == "literal") != overlap:
            wrong.append((query.text, query.kind, {t: s for t, s in shared.items() if s}))
    assert not wrong


def test_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("ok\tliteral\t🎂\nbroken line\n")
    with pytest.raises(ValueError, match=r"q.tsv:2: expected query<TAB>kind<TAB>targets"):
        load_query_set(path)
    path.write_text("ok\tfuzzy\t🎂\n")
    with pytest.raises(ValueError, match=r"q.tsv:1: kind 'fuzzy'"):
        load_query_set(path)


def test_hit_rate_counts_rank_within_k(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("cake\tliteral\t🎂\nomg\tparaphrase\t😱\nyay\tparaphrase\t🥳\n")
    queries = load_query_set(path)
    results = {"cake": ["🍰", "🎂"], "omg": ["😱"], "yay": ["😀", "😁", "😂", "🤣", "😃", "🥳"]}
    scores = hit_rate_at_k(lambda q, k: results[q][:k], queries, k=5)
    assert scores["literal"] == {"hit_rate": 1.0, "mrr": 0.5, "count": 1}
    assert scores["paraphrase"] == {"hit_rate": 0.5, "mrr": 0.5, "count": 2}
    assert scores["all"]["hit_rate"] == pytest.approx(2 / 3)
