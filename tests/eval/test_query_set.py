"""The emoji query set: every target exists in CLDR, and the kind labels are true.

Rule (words = lowercase letter/digit runs as in ``word_tokens``, one trailing "s"
stripped, a short list of function words ignored): a "literal" query shares a word with the CLDR name or keywords of at
least one target; a "paraphrase" query shares no word with any target's.
"""

from pathlib import Path
from xml.etree import ElementTree

import pytest

from retrievalkit.eval.query_set import (
    emoji_query_file,
    hit_rate_at_k,
    load_query_set,
    query_part,
)
from retrievalkit.index.bm25 import word_tokens

QUERIES = emoji_query_file()
CLDR_DIR = Path("/usr/share/unicode/cldr/common")
CLDR = CLDR_DIR / "annotations" / "en.xml"
CLDR_DERIVED = CLDR_DIR / "annotationsDerived" / "en.xml"
# function words only (no content word may be hidden here to make a label pass)
STOP_WORDS = frozenset(
    "a an the of i am so is are my to for in on and it me you us at with there be do".split()  # noqa: SIM905
)
needs_cldr = pytest.mark.skipif(not CLDR.exists(), reason=f"{CLDR} absent (unicode-cldr-core)")


def content_words(text: str) -> set[str]:
    """Lowercase word tokens minus stop words, one trailing "s" stripped ("hands" = "hand")."""
    return {w.removesuffix("s") for w in word_tokens(text) if w not in STOP_WORDS}


def read_cldr_texts(*paths: Path) -> dict[str, str]:
    """``{emoji (cp, without U+FE0F): name + keywords}`` from CLDR annotation files."""
    texts: dict[str, list[str]] = {}
    for path in paths:
        if not path.exists():
            continue
        for node in ElementTree.parse(path).getroot().iter("annotation"):
            emoji = node.get("cp", "").replace("\ufe0f", "")
            texts.setdefault(emoji, []).append(node.text or "")
    return {emoji: " | ".join(parts) for emoji, parts in texts.items()}


@pytest.fixture(scope="module")
def cldr_words() -> dict[str, set[str]]:
    return {e: content_words(t) for e, t in read_cldr_texts(CLDR, CLDR_DERIVED).items()}


def test_query_set_size_and_kinds() -> None:
    queries = load_query_set(QUERIES)
    kinds = [q.kind for q in queries]
    assert len(queries) >= 120
    for kind in ("literal", "paraphrase"):  # about half each
        assert 0.4 <= kinds.count(kind) / len(queries) <= 0.6, kind
    assert len({q.text for q in queries}) == len(queries), "duplicate query"


@needs_cldr
def test_targets_exist_in_cldr(cldr_words: dict[str, set[str]]) -> None:
    missing = [
        (q.text, t) for q in load_query_set(QUERIES) for t in q.targets if t not in cldr_words
    ]
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


def test_hit_rate_rejects_bad_calls() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        hit_rate_at_k(lambda q, k: [], [], k=0)
    with pytest.raises(ValueError, match="no queries"):
        hit_rate_at_k(lambda q, k: [], [], k=5)


def test_variation_selector_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("love\tliteral\t\u2764\ufe0f\n")
    queries = load_query_set(path)
    assert queries[0].targets == ("\u2764",)
    assert hit_rate_at_k(lambda q, k: ["\u2764\ufe0f"], queries)["all"]["hit_rate"] == 1.0


def test_dev_and_test_parts_split_the_set() -> None:
    every = load_query_set(QUERIES)
    dev, test = load_query_set(QUERIES, part="dev"), load_query_set(QUERIES, part="test")
    assert {q.text for q in dev}.isdisjoint(q.text for q in test)
    assert len(dev) + len(test) == len(every)
    counts = {
        (name, kind): sum(q.kind == kind for q in part)
        for name, part in (("dev", dev), ("test", test))
        for kind in ("literal", "paraphrase")
    }  # the numbers written in query_set's docstring
    assert counts == {
        ("dev", "literal"): 54,
        ("dev", "paraphrase"): 36,
        ("test", "literal"): 51,
        ("test", "paraphrase"): 49,
    }
    assert all(query_part(q.text) == "test" for q in test)


def test_part_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("cake\tliteral\t🎂\n")
    with pytest.raises(ValueError, match="query part must be one of"):
        load_query_set(path, part="train")
    other = "test" if query_part("cake") == "dev" else "dev"
    with pytest.raises(ValueError, match=f"no queries in part '{other}'"):
        load_query_set(path, part=other)
