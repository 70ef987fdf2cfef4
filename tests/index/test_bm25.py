"""BM25 against a hand-computed example and a rank_bm25-style reference loop."""

import math
import random

import pytest

from retrievalkit.index import BM25Index, word_tokens

DOCS = ["the cat sat", "The dog sat on the mat", "cat, cat, dog!"]
KEYS = ["d0", "d1", "d2"]


def test_hand_computed_three_documents() -> None:
    # lengths 3, 6, 3 -> avgdl 4; N = 3; k1 = 1.5, b = 0.75
    # idf(df=2) = log((3 - 2 + .5) / (2 + .5) + 1) = log(1.6); idf(df=1) = log(8 / 3)
    # length norm K(d) = k1 (1 - b + b |d| / avgdl): K(3) = 1.21875, K(6) = 2.0625
    index = BM25Index(DOCS, KEYS)
    cat_d0 = math.log(1.6) * 1 * 2.5 / (1 + 1.21875)  # 0.529582
    cat_d2 = math.log(1.6) * 2 * 2.5 / (2 + 1.21875)  # 0.730103
    assert index.scores("cat") == pytest.approx([cat_d0, 0.0, cat_d2], abs=1e-12)
    assert cat_d0 == pytest.approx(0.529582, abs=1e-6)
    assert cat_d2 == pytest.approx(0.730103, abs=1e-6)
    rare_d1 = math.log(8 / 3) * 2.5 / (1 + 2.0625)  # "mat" or "on" in d1: 0.800677
    hits = index.search("Mat on CAT", k=10)
    assert [h.key for h in hits] == ["d1", "d2", "d0"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(2 * rare_d1, abs=1e-12)
    assert hits[0].score == pytest.approx(1.601354, abs=1e-6)
    assert index.search("Mat on CAT", k=2)[1].key == "d2"


def test_no_match_ties_and_errors() -> None:
    index = BM25Index(["red apple", "red apple", "green pear"], ["a", "b", "c"])
    assert index.search("banana") == []
    assert [h.key for h in index.search("apple")] == ["a", "b"]  # equal scores: doc order
    with pytest.raises(ValueError, match="2 documents but 1 keys"):
        BM25Index(["x", "y"], ["k"])
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        index.search("apple", 0)
    assert BM25Index(["", ""], ["a", "b"]).search("x") == []


def reference_scores(corpus: list[list[str]], query: list[str], k1: float, b: float):
    """rank_bm25's BM25Okapi.get_scores loop, with the idf the task states."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    df: dict[str, int] = {}
    for doc in corpus:
        for word in set(doc):
            df[word] = df.get(word, 0) + 1
    scores = [0.0] * n
    for q in query:
        if q not in df:
            continue
        idf = math.log((n - df[q] + 0.5) / (df[q] + 0.5) + 1)
        for i, doc in enumerate(corpus):
            freq = doc.count(q)
            scores[i] += idf * (freq * (k1 + 1) / (freq + k1 * (1 - b + b * len(doc) / avgdl)))
    return scores


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.0), (2.0, 1.0), (0.5, 0.5)])
def test_matches_reference_formula_on_random_corpus(k1: float, b: float) -> None:
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(25)]
    corpus = [[rng.choice(vocab) for _ in range(rng.randint(1, 12))] for _ in range(40)]
    index = BM25Index([" ".join(d) for d in corpus], [str(i) for i in range(40)], k1=k1, b=b)
    for _ in range(20):
        query = [rng.choice(vocab) for _ in range(rng.randint(1, 4))]
        assert index.scores(" ".join(query)) == pytest.approx(
            reference_scores(corpus, query, k1, b), rel=1e-12, abs=1e-12
        )


def test_tokenizer_and_from_texts() -> None:
    assert word_tokens("Piñata, o’clock 1st_place") == ["piñata", "o", "clock", "1st", "place"]
    index = BM25Index.from_texts(
        {"🎂": ["birthday cake", "cake", "celebration"], "🍰": "shortcake | cake slice | dessert"},
        b=0.5,
    )
    assert index.keys == ["🎂", "🍰"] and index.b == 0.5
    assert [h.key for h in index.search("cake")] == ["🎂", "🍰"]
    upper = BM25Index(["A a", "b"], ["x", "y"], tokenizer=str.split)
    assert upper.search("a")[0].key == "x" and upper.search("A")[0].key == "x"
