"""Metric-learning scores: hand-computed ranking metrics, ties, a naive full-sort loop,
pytorch-metric-learning's AccuracyCalculator, NMI and k-means."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from retrievalkit.eval import kmeans, metric_learning_scores, normalized_mutual_info


def naive_scores(emb, labels, ks, query_emb=None, query_labels=None):
    """Per query: full sort with relevant items first among equal scores (optimistic
    ties), then the textbook definitions; queries without relevant items skipped."""
    loo = query_emb is None
    queries, q_labels = (emb, labels) if loo else (query_emb, query_labels)
    acc = {f"recall@{k}": 0.0 for k in ks} | {"map": 0.0, "map_at_r": 0.0, "r_precision": 0.0}
    counted = 0
    for q in range(len(q_labels)):
        items = [j for j in range(len(labels)) if not (loo and j == q)]
        rel_of = {j: int(labels[j] == q_labels[q]) for j in items}
        order = sorted(items, key=lambda j: (-float(queries[q] @ emb[j]), -rel_of[j]))
        rel = [rel_of[j] for j in order]
        r = sum(rel)
        if r == 0:
            continue
        counted += 1
        precisions = [sum(rel[: i + 1]) / (i + 1) for i in range(len(rel))]
        acc["map"] += sum(p for p, x in zip(precisions, rel) if x) / r
        acc["map_at_r"] += sum(p * x for p, x in zip(precisions[:r], rel[:r])) / r
        acc["r_precision"] += sum(rel[:r]) / r
        for k in ks:
            acc[f"recall@{k}"] += float(any(rel[:k]))
    return {k: 100 * v / counted for k, v in acc.items()}


def on_circle(degrees):
    angles = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def test_hand_computed_six_samples():
    # unit vectors at these angles; the score is cos(angle difference), so each query
    # ranks the others by angular distance. Labels A A B A B B.
    emb = on_circle([0, 10, 30, 60, 100, 180])
    labels = torch.tensor([0, 0, 1, 0, 1, 1])
    # query (label) : others by distance (label)         rel      R  AP          MAP@R  Rprec
    # p0 (A)  : p1 10 A, p2 30 B, p3 60 A, p4 B, p5 B     1 0 1 0 0 2  (1+2/3)/2   1/2    1/2
    # p1 (A)  : p0 10 A, p2 20 B, p3 50 A, p4 B, p5 B     1 0 1 0 0 2  5/6         1/2    1/2
    # p2 (B)  : p1 20 A, p0/p3 30 A A, p4 70 B, p5 150 B  0 0 0 1 1 2  (1/4+2/5)/2 0      0
    # p3 (A)  : p2 30 B, p4 40 B, p1 50 A, p0 60 A, p5 B  0 0 1 1 0 2  (1/3+2/4)/2 0      0
    # p4 (B)  : p3 40 A, p2 70 B, p5 80 B, p1 A, p0 A     0 1 1 0 0 2  (1/2+2/3)/2 1/4    1/2
    # p5 (B)  : p4 80 B, p3 120 A, p2 150 B, p1 A, p0 A   1 0 1 0 0 2  5/6         1/2    1/2
    r = metric_learning_scores(emb, labels, ks=(1, 2, 4), nmi=False)
    ap = [5 / 6, 5 / 6, 13 / 40, 5 / 12, 7 / 12, 5 / 6]
    assert r["map"] == pytest.approx(100 * sum(ap) / 6)  # 63.75
    assert r["map"] == pytest.approx(63.75)
    assert r["map_at_r"] == pytest.approx(100 * (0.5 + 0.5 + 0 + 0 + 0.25 + 0.5) / 6)
    assert r["r_precision"] == pytest.approx(100 * 2 / 6)
    assert r["recall@1"] == pytest.approx(50.0)  # p0, p1, p5
    assert r["recall@2"] == pytest.approx(400 / 6)  # and p4
    assert r["recall@4"] == 100.0
    assert r["num_queries"] == 6 and r["num_gallery"] == 6
    # query p0 against the gallery of all six (In-Shop protocol: nothing excluded):
    # p0 itself 0 A, p1 10 A, p2 B, p3 A, p4 B, p5 B -> rel 1 1 0 1 0 0, R = 3
    q0 = metric_learning_scores(
        emb, labels, ks=(1,), nmi=False, query_emb=emb[:1], query_labels=labels[:1]
    )
    assert q0["map"] == pytest.approx(100 * (1 + 1 + 3 / 4) / 3)
    assert q0["map_at_r"] == pytest.approx(100 * (1 + 1) / 3)
    assert q0["r_precision"] == pytest.approx(100 * 2 / 3)


def test_ties_count_in_the_query_favour():
    # the query's nearest gallery items are three equal vectors: one relevant, two not;
    # then a relevant item further away. Optimistic: relevant first -> positions 1, 4.
    v, w = [1.0, 0.0], [0.6, 0.8]
    gallery = torch.tensor([v, v, v, w])
    query = torch.tensor([v])
    for perm in ([0, 1, 2, 3], [1, 2, 0, 3], [3, 2, 1, 0]):
        labels = torch.tensor([1, 0, 0, 1])[perm]
        r = metric_learning_scores(
            gallery[perm],
            labels,
            ks=(1, 2),
            query_emb=query,
            query_labels=torch.tensor([1]),
            nmi=False,
        )
        assert r["recall@1"] == 100.0
        assert r["map"] == pytest.approx(100 * (1 / 1 + 2 / 4) / 2)  # AP = 0.75
        assert r["map_at_r"] == pytest.approx(100 * 1 / 2)  # R = 2, only position 1
        assert r["r_precision"] == pytest.approx(50.0)
    # an irrelevant item scoring strictly higher does push the relevant one down
    gallery[1] = torch.tensor([1.0, 0.01])
    query = torch.tensor([[1.0, 0.02]])
    r = metric_learning_scores(
        gallery,
        torch.tensor([1, 0, 0, 1]),
        ks=(1,),
        query_emb=query,
        query_labels=torch.tensor([1]),
        nmi=False,
    )
    assert r["recall@1"] == 0.0


@pytest.mark.parametrize("chunk", [1, 7, None, 1000])
def test_matches_naive_implementation(chunk):
    g = torch.Generator().manual_seed(3)
    emb = F.normalize(torch.randn(41, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 6, (41,), generator=g)
    ours = metric_learning_scores(emb, labels, ks=(1, 2, 4, 8), chunk_size=chunk, nmi=False)
    ref = naive_scores(emb, labels, (1, 2, 4, 8))
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value), key


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), classes=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_many_ties_match_naive_and_ignore_gallery_order(n, classes, seed):
    # coarse embeddings (values in {-1, 0, 1}) give many equal scores
    g = torch.Generator().manual_seed(seed)
    emb = torch.randint(-1, 2, (n, 2), generator=g).double()
    labels = torch.randint(0, classes, (n,), generator=g)
    if (torch.bincount(labels) > 1).sum() == 0:
        labels[0] = labels[1]
    ours = metric_learning_scores(emb, labels, ks=(1, 3), chunk_size=4, nmi=False)
    ref = naive_scores(emb, labels, (1, 3))
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value), key
    queries = emb[:3] + torch.tensor([0.5, 0.0], dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    a = metric_learning_scores(emb, labels, (1, 3), queries, labels[:3], nmi=False)
    b = metric_learning_scores(emb[perm], labels[perm], (1, 3), queries, labels[:3], nmi=False)
    assert a == pytest.approx(b)
    recalls = [ours["recall@1"], ours["recall@3"]]
    assert recalls == sorted(recalls)


@pytest.mark.parametrize("separate_queries", [False, True])
def test_agrees_with_pytorch_metric_learning(separate_queries):
    # PML's AccuracyCalculator with k=None ranks the whole gallery, so its
    # "mean_average_precision" is the full mAP like ours (with k=int or
    # "max_bin_count" it would be truncated); precision_at_1 == recall@1.
    # NMI differs by construction (PML clusters with faiss), so it is not compared.
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    g = torch.Generator().manual_seed(7)
    emb = F.normalize(torch.randn(150, 8, generator=g), dim=1)
    labels = torch.randint(0, 9, (150,), generator=g)
    labels[0] = 99  # a query without any relevant item: left out by both
    calc = accuracy_calculator.AccuracyCalculator(
        include=(
            "precision_at_1",
            "r_precision",
            "mean_average_precision_at_r",
            "mean_average_precision",
        ),
        k=None,
    )
    if separate_queries:
        queries = F.normalize(torch.randn(40, 8, generator=g), dim=1)
        q_labels = torch.randint(0, 10, (40,), generator=g)
        pml = calc.get_accuracy(queries, q_labels, emb, labels, ref_includes_query=False)
        ours = metric_learning_scores(
            emb, labels, (1,), queries, q_labels, chunk_size=16, nmi=False
        )
    else:
        pml = calc.get_accuracy(emb, labels)
        ours = metric_learning_scores(emb, labels, ks=(1,), chunk_size=16, nmi=False)
    assert ours["recall@1"] == pytest.approx(100 * pml["precision_at_1"])
    assert ours["r_precision"] == pytest.approx(100 * pml["r_precision"])
    assert ours["map_at_r"] == pytest.approx(100 * pml["mean_average_precision_at_r"])
    assert ours["map"] == pytest.approx(100 * pml["mean_average_precision"])


def test_single_sample_classes_are_left_out():
    emb = torch.eye(4)
    r = metric_learning_scores(emb, torch.tensor([0, 0, 1, 2]), ks=(1,), nmi=False)
    assert r["num_queries"] == 2
    with pytest.raises(ValueError, match="no query has a relevant item"):
        metric_learning_scores(emb, torch.tensor([0, 1, 2, 3]), nmi=False)


def test_input_errors():
    with pytest.raises(ValueError, match=r"expected emb \[N, D\]"):
        metric_learning_scores(torch.eye(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        metric_learning_scores(torch.eye(3) * torch.nan, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="query_labels"):
        metric_learning_scores(torch.eye(3), torch.tensor([0, 0, 1]), query_emb=torch.eye(3))
    with pytest.raises(ValueError, match="ks must be"):
        metric_learning_scores(torch.eye(3), torch.tensor([0, 0, 1]), ks=(0,))


def test_nmi_hand_example():
    labels = torch.tensor([0, 0, 1, 1])
    assert normalized_mutual_info(labels, torch.tensor([1, 1, 0, 0])) == pytest.approx(1.0)
    assert normalized_mutual_info(labels, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)
    # labels {0,0,1,1}, clusters {0,0,0,1}: p(l, c) = .5 (0,0), .25 (1,0), .25 (1,1)
    # I = .5 ln(.5/(.5*.75)) + .25 ln(.25/(.5*.75)) + .25 ln(.25/(.5*.25))
    #   = .5 ln(4/3) + .25 ln(2/3) + .25 ln 2 = 0.2158
    # H(L) = ln 2 = 0.6931, H(C) = -(.75 ln .75 + .25 ln .25) = 0.5623
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_l, h_c = math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = mutual / ((h_l + h_c) / 2)
    assert expected == pytest.approx(0.34371, abs=1e-5)
    assert normalized_mutual_info(labels, torch.tensor([0, 0, 0, 1])) == pytest.approx(expected)
    # scikit-learn's conventions: both partitions a single set -> 1; one of them -> 0
    assert normalized_mutual_info(torch.zeros(3), torch.zeros(3)) == 1.0
    assert normalized_mutual_info(labels, torch.zeros(4)) == 0.0


def test_nmi_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        labels = torch.randint(0, 6, (200,), generator=g)
        clusters = torch.randint(0, 4, (200,), generator=g)
        expected = metrics.normalized_mutual_info_score(labels.numpy(), clusters.numpy())
        assert normalized_mutual_info(labels, clusters) == pytest.approx(expected)


def test_kmeans_is_seeded_and_separates_clear_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    labels = torch.arange(3).repeat_interleave(20)
    points = centers[labels] + 0.1 * torch.randn(60, 2, generator=g)
    assignments = kmeans(points, 3, seed=1)
    assert normalized_mutual_info(labels, assignments) == pytest.approx(1.0)
    noise = torch.randn(80, 4, generator=g)
    assert torch.equal(kmeans(noise, 5, seed=3), kmeans(noise, 5, seed=3))
    assert kmeans(noise, 5, seed=3).unique().numel() == 5
    r = metric_learning_scores(F.normalize(points, dim=1), labels, ks=(1,))
    assert r["nmi"] == pytest.approx(100.0) and r["recall@1"] == 100.0
    with pytest.raises(ValueError, match="k must be"):
        kmeans(noise, 81)
