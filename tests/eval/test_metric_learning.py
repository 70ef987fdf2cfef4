"""Metric-learning scores: hand-computed ranking metrics, NMI, naive comparison."""

import math

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.eval import kmeans, metric_learning_scores, normalized_mutual_info


def naive_scores(emb, labels, ks):
    """Per query: full sort, then the textbook definitions (self excluded)."""
    n = len(labels)
    acc = {f"recall@{k}": 0.0 for k in ks} | {"map": 0.0, "map_at_r": 0.0, "r_precision": 0.0}
    counted = 0
    for q in range(n):
        others = [j for j in range(n) if j != q]
        order = sorted(others, key=lambda j: -float(emb[q] @ emb[j]))
        rel = [int(labels[j] == labels[q]) for j in order]
        r = sum(rel)
        if r == 0:
            continue
        counted += 1
        precisions = [sum(rel[: i + 1]) / (i + 1) for i in range(len(rel))]
        acc["map"] += sum(p for p, x in zip(precisions, rel, strict=True) if x) / r
        acc["map_at_r"] += sum(p * x for p, x in zip(precisions[:r], rel[:r], strict=True)) / r
        acc["r_precision"] += sum(rel[:r]) / r
        for k in ks:
            acc[f"recall@{k}"] += float(any(rel[:k]))
    return {k: 100 * v / counted for k, v in acc.items()}


def test_hand_computed_example():
    # 1-D embeddings on a line; query 0 (value 1.0, label A) ranks: 0.9(A) 0.5(B) 0.4(A) -1(B) -1.1(B)
    emb = torch.tensor([[1.0], [0.9], [0.5], [0.4], [-1.0], [-1.1]])
    labels = torch.tensor([0, 0, 1, 0, 1, 1])
    r = metric_learning_scores(emb, labels, ks=(1,), nmi=False)
    # Query 0: rel = 1 0 1 0 0, R=2: AP = (1 + 2/3)/2, MAP@R = 1/2, Rprec = 1/2
    # (the other queries follow the same rule; compare with the naive loop)
    ref = naive_scores(emb, labels, (1,))
    for key, value in ref.items():
        assert r[key] == pytest.approx(value), key
    single = metric_learning_scores(
        emb[:1].repeat(1, 1),
        labels[:1],
        ks=(1,),
        nmi=False,
        query_emb=emb[:1],
        query_labels=labels[:1],
    )
    assert single["recall@1"] == 100.0
    # query 0 alone, by hand
    q0 = metric_learning_scores(
        emb, labels, ks=(1,), nmi=False, query_emb=emb[:1] * 1.0, query_labels=labels[:1]
    )
    # gallery includes query 0 itself (In-Shop protocol excludes nothing): rel = 1 1 0 1 0 0
    assert q0["map"] == pytest.approx(100 * (1 + 1 + 3 / 4) / 3)
    assert q0["map_at_r"] == pytest.approx(100 * (1 + 1) / 3)
    assert q0["r_precision"] == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_matches_naive_implementation(chunk):
    g = torch.Generator().manual_seed(chunk)
    emb = F.normalize(torch.randn(41, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 6, (41,), generator=g)
    ours = metric_learning_scores(emb, labels, ks=(1, 2, 4, 8), chunk_size=chunk, nmi=False)
    ref = naive_scores(emb, labels, (1, 2, 4, 8))
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value), key


def test_single_sample_classes_are_left_out():
    emb = torch.eye(4)
    r = metric_learning_scores(emb, torch.tensor([0, 0, 1, 2]), ks=(1,), nmi=False)
    assert r["num_queries"] == 2
    with pytest.raises(ValueError, match="no query has a relevant item"):
        metric_learning_scores(emb, torch.tensor([0, 1, 2, 3]), nmi=False)


def test_nmi_hand_example():
    labels = torch.tensor([0, 0, 1, 1])
    assert normalized_mutual_info(labels, torch.tensor([1, 1, 0, 0])) == pytest.approx(1.0)
    assert normalized_mutual_info(labels, torch.tensor([0, 1, 0, 1])) == pytest.approx(
        0.0, abs=1e-12
    )
    # labels {0,0,1,1}, clusters {0,0,0,1}: I = 0.5*ln2*... computed by hand below
    c = torch.tensor([0, 0, 0, 1])
    p = {(0, 0): 0.5, (1, 0): 0.25, (1, 1): 0.25}
    pl, pc = {0: 0.5, 1: 0.5}, {0: 0.75, 1: 0.25}
    mutual = sum(v * math.log(v / (pl[a] * pc[b])) for (a, b), v in p.items())
    h = lambda d: -sum(v * math.log(v) for v in d.values())  # noqa: E731
    assert normalized_mutual_info(labels, c) == pytest.approx(mutual / ((h(pl) + h(pc)) / 2))


def test_kmeans_separates_clear_clusters_and_nmi_is_100():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    labels = torch.arange(3).repeat_interleave(20)
    points = centers[labels] + 0.1 * torch.randn(60, 2, generator=g)
    assignments = kmeans(points, 3, seed=1)
    assert normalized_mutual_info(labels, assignments) == pytest.approx(1.0)
    r = metric_learning_scores(F.normalize(points, dim=1), labels, ks=(1,))
    assert r["nmi"] == pytest.approx(100.0) and r["recall@1"] == 100.0
