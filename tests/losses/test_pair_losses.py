"""Pair losses against brute-force loops written from the formulas (float64, values
and gradients), against pytorch-metric-learning where definitions agree, and on
edge cases. Tolerance: 1e-8 in float64 unless stated."""

import math

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import (
    BinomialDevianceLoss,
    ContrastiveLoss,
    GeneralizedLiftedStructureLoss,
    LiftedStructureLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)


def batch(n=13, d=6, classes=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1).requires_grad_()
    labels = torch.randint(0, classes, (n,), generator=g)
    return emb, labels


def cos(x, i, j):
    return x[i] @ x[j]


def pos_pairs(labels):
    n = len(labels)
    return [(i, j) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]


def neg_pairs(labels):
    n = len(labels)
    return [(i, j) for i in range(n) for j in range(n) if labels[i] != labels[j]]


def mean_or_zero(terms, x):
    return torch.stack(terms).mean() if terms else x.sum() * 0


def ref_contrastive(x, labels, margin):
    pos = [1 - cos(x, i, j) for i, j in pos_pairs(labels)]
    neg = [(cos(x, i, j) - margin).clamp(min=0) for i, j in neg_pairs(labels)]
    return mean_or_zero(pos, x) + mean_or_zero(neg, x)


def ref_binomial(x, labels, a, b, base):
    pos = [torch.log1p(torch.exp(-a * (cos(x, i, j) - base))) for i, j in pos_pairs(labels)]
    neg = [torch.log1p(torch.exp(b * (cos(x, i, j) - base))) for i, j in neg_pairs(labels)]
    return mean_or_zero(pos, x) + mean_or_zero(neg, x)


def ref_triplet_all(x, labels, margin):
    n, terms = len(labels), []
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if p != a and labels[p] == labels[a] and labels[q] != labels[a]:
                    terms.append((cos(x, a, q) - cos(x, a, p) + margin).clamp(min=0))
    return mean_or_zero(terms, x)


def ref_triplet_hard(x, labels, margin):
    n, terms = len(labels), []
    for a in range(n):
        ps = [cos(x, a, p) for p in range(n) if p != a and labels[p] == labels[a]]
        qs = [cos(x, a, q) for q in range(n) if labels[q] != labels[a]]
        if ps and qs:
            terms.append((torch.stack(qs).max() - torch.stack(ps).min() + margin).clamp(min=0))
    return mean_or_zero(terms, x)


def ref_lifted(x, labels, margin):
    n = len(labels)
    negs = {
        i: [margin + cos(x, i, k) for k in range(n) if labels[k] != labels[i]] for i in range(n)
    }
    terms = []
    for i, j in pos_pairs(labels):
        if not negs[i] + negs[j]:  # log(0) = -inf: the hinge is 0
            terms.append(x.sum() * 0)
            continue
        stacked = torch.stack(negs[i] + negs[j])
        j_ij = torch.log(torch.exp(stacked).sum()) - cos(x, i, j)
        terms.append(j_ij.clamp(min=0) ** 2)
    return torch.stack(terms).sum() / (2 * len(terms)) if terms else x.sum() * 0


def ref_lifted_generalized(x, labels, margin):
    n, total = len(labels), x.sum() * 0
    for i in range(n):
        ps = [margin - cos(x, i, k) for k in range(n) if k != i and labels[k] == labels[i]]
        qs = [cos(x, i, k) for k in range(n) if labels[k] != labels[i]]
        if ps and qs:
            total = total + (
                torch.logsumexp(torch.stack(ps), 0) + torch.logsumexp(torch.stack(qs), 0)
            ).clamp(min=0)
    return total / n


def ref_multi_similarity(x, labels, alpha, beta, base, eps):
    n, total = len(labels), x.sum() * 0
    for i in range(n):
        ps = [k for k in range(n) if k != i and labels[k] == labels[i]]
        qs = [k for k in range(n) if labels[k] != labels[i]]
        if eps is not None:
            min_pos = min((float(cos(x, i, k).detach()) for k in ps), default=math.inf)
            max_neg = max((float(cos(x, i, k).detach()) for k in qs), default=-math.inf)
            qs = [k for k in qs if float(cos(x, i, k).detach()) + eps > min_pos]
            ps = [k for k in ps if float(cos(x, i, k).detach()) - eps < max_neg]
        pos_sum = sum((torch.exp(-alpha * (cos(x, i, k) - base)) for k in ps), x.sum() * 0)
        neg_sum = sum((torch.exp(beta * (cos(x, i, k) - base)) for k in qs), x.sum() * 0)
        total = total + torch.log1p(pos_sum) / alpha + torch.log1p(neg_sum) / beta
    return total / n


CASES = [
    ("contrastive", lambda: ContrastiveLoss(margin=0.3), lambda x, y: ref_contrastive(x, y, 0.3)),
    (
        "binomial",
        lambda: BinomialDevianceLoss(2.0, 50.0, 0.5),
        lambda x, y: ref_binomial(x, y, 2.0, 50.0, 0.5),
    ),
    ("triplet_all", lambda: TripletMarginLoss(0.2, "all"), lambda x, y: ref_triplet_all(x, y, 0.2)),
    (
        "triplet_hard",
        lambda: TripletMarginLoss(0.2, "batch_hard"),
        lambda x, y: ref_triplet_hard(x, y, 0.2),
    ),
    ("lifted", lambda: LiftedStructureLoss(1.0), lambda x, y: ref_lifted(x, y, 1.0)),
    (
        "lifted_generalized",
        lambda: GeneralizedLiftedStructureLoss(1.0),
        lambda x, y: ref_lifted_generalized(x, y, 1.0),
    ),
    (
        "ms",
        lambda: MultiSimilarityLoss(),
        lambda x, y: ref_multi_similarity(x, y, 2.0, 50.0, 0.5, 0.1),
    ),
    (
        "ms_no_mining",
        lambda: MultiSimilarityLoss(epsilon=None),
        lambda x, y: ref_multi_similarity(x, y, 2.0, 50.0, 0.5, None),
    ),
]


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed,n,classes", [(0, 13, 4), (1, 9, 2), (2, 17, 6), (3, 5, 5)])
def test_value_and_gradient_equal_brute_force(name, make, ref, seed, n, classes):
    x, labels = batch(n=n, classes=classes, seed=seed)
    ours = make()(x, labels)
    expected = ref(x, labels)
    assert torch.allclose(ours, expected, atol=1e-8, rtol=1e-8), (float(ours), float(expected))
    g_ours = torch.autograd.grad(ours, x)[0]
    g_ref = torch.autograd.grad(expected, x, allow_unused=True)[0]
    g_ref = torch.zeros_like(x) if g_ref is None else g_ref
    assert torch.allclose(g_ours, g_ref, atol=1e-7)


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_edge_cases(name, make, ref):
    loss = make()
    # one class: no negatives; single samples: no positives; both give a graph-connected value
    for labels in (torch.zeros(6, dtype=torch.long), torch.arange(6)):
        x, _ = batch(n=6, seed=4)
        value = loss(x, labels)
        assert torch.isfinite(value)
        assert torch.allclose(value, ref(x, labels), atol=1e-8)
        value.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    # B = 1
    x, _ = batch(n=1, seed=5)
    assert torch.isfinite(loss(x, torch.zeros(1, dtype=torch.long)))
    # identical embeddings
    same = F.normalize(torch.ones(8, 4, dtype=torch.float64), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    value = loss(same, labels)
    assert torch.allclose(value, ref(same, labels), atol=1e-8)
    value.backward()
    assert torch.isfinite(same.grad).all()


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(name, make, ref, dtype):
    x, labels = batch(n=24, d=16, classes=5, seed=7, dtype=torch.float32)
    expected = make()(x.detach(), labels)
    low = make()(x.detach().to(dtype), labels)
    assert low.dtype == torch.float32
    assert torch.allclose(low, expected, rtol=0.05, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = make()(x, labels)
    assert under.dtype == torch.float32 and torch.isfinite(under)


def test_references_are_appended_to_the_batch():
    x, labels = batch(n=7, seed=8)
    refs, ref_labels = batch(n=5, seed=9)
    refs = refs.detach()
    loss = MultiSimilarityLoss(epsilon=None)(x, labels, refs, ref_labels)
    # brute force: rows = the batch, columns = batch + refs, self pairs excluded
    allx = torch.cat([x, refs])
    all_labels = torch.cat([labels, ref_labels])
    total = x.sum() * 0
    for i in range(7):
        ps = [k for k in range(12) if k != i and all_labels[k] == labels[i]]
        qs = [k for k in range(12) if all_labels[k] != labels[i]]
        pos_sum = sum((torch.exp(-2 * (x[i] @ allx[k] - 0.5)) for k in ps), x.sum() * 0)
        neg_sum = sum((torch.exp(50 * (x[i] @ allx[k] - 0.5)) for k in qs), x.sum() * 0)
        total = total + torch.log1p(pos_sum) / 2 + torch.log1p(neg_sum) / 50
    assert torch.allclose(loss, total / 7, atol=1e-10)
    with pytest.raises(ValueError, match="does not accept reference"):
        LiftedStructureLoss()(x, labels, refs, ref_labels)


def test_ms_norm_check():
    x, labels = batch(n=6, seed=1)
    with pytest.raises(ValueError, match="L2-normalized"):
        MultiSimilarityLoss(check_norms=True)(x * 2, labels)
    MultiSimilarityLoss(check_norms=True)(x, labels)


def test_bad_inputs_are_clear_errors():
    x, labels = batch(n=6)
    with pytest.raises(ValueError, match="has 6 rows but its labels have 5"):
        ContrastiveLoss()(x, labels[:5])
    with pytest.raises(TypeError, match="integer ids"):
        ContrastiveLoss()(x, labels.double())
    with pytest.raises(ValueError, match="mining must be"):
        TripletMarginLoss(mining="semi_hard")
