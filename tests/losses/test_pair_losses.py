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
    core,
)


def batch(n=13, d=6, classes=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1).requires_grad_()
    labels = torch.randint(0, classes, (n,), generator=g)
    return emb, labels


# Brute force over queries x[0..n) and references allx = [x; refs] (labels all_y):
# self pairs (i, i) are excluded, as in retrievalkit.losses.core.


def cos(x, i, j, allx=None):
    return x[i] @ (x if allx is None else allx)[j]


def pos_cols(i, labels, all_labels):
    return [j for j in range(len(all_labels)) if j != i and all_labels[j] == labels[i]]


def neg_cols(i, labels, all_labels):
    return [j for j in range(len(all_labels)) if all_labels[j] != labels[i]]


def with_refs(x, labels, refs, ref_labels):
    if refs is None:
        return x, labels
    return torch.cat([x, refs]), torch.cat([labels, ref_labels])


def mean_or_zero(terms, x):
    return torch.stack(terms).mean() if terms else x.sum() * 0


def ref_contrastive(x, labels, margin, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    n = len(labels)
    pos = [1 - cos(x, i, j, allx) for i in range(n) for j in pos_cols(i, labels, ally)]
    neg = [
        (cos(x, i, j, allx) - margin).clamp(min=0)
        for i in range(n)
        for j in neg_cols(i, labels, ally)
    ]
    return mean_or_zero(pos, x) + mean_or_zero(neg, x)


def ref_binomial(x, labels, a, b, base, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    n = len(labels)
    pos = [
        torch.log1p(torch.exp(-a * (cos(x, i, j, allx) - base)))
        for i in range(n)
        for j in pos_cols(i, labels, ally)
    ]
    neg = [
        torch.log1p(torch.exp(b * (cos(x, i, j, allx) - base)))
        for i in range(n)
        for j in neg_cols(i, labels, ally)
    ]
    return mean_or_zero(pos, x) + mean_or_zero(neg, x)


def ref_triplet_all(x, labels, margin, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    terms = []
    for a in range(len(labels)):
        for p in pos_cols(a, labels, ally):
            for q in neg_cols(a, labels, ally):
                terms.append((cos(x, a, q, allx) - cos(x, a, p, allx) + margin).clamp(min=0))
    return mean_or_zero(terms, x)


def ref_triplet_hard(x, labels, margin, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    terms = []
    for a in range(len(labels)):
        ps = [cos(x, a, p, allx) for p in pos_cols(a, labels, ally)]
        qs = [cos(x, a, q, allx) for q in neg_cols(a, labels, ally)]
        if ps and qs:
            terms.append((torch.stack(qs).max() - torch.stack(ps).min() + margin).clamp(min=0))
    return mean_or_zero(terms, x)


def ref_lifted(x, labels, margin):
    n = len(labels)
    negs = {i: [margin + cos(x, i, k) for k in neg_cols(i, labels, labels)] for i in range(n)}
    terms = []
    for i in range(n):
        for j in pos_cols(i, labels, labels):
            if not negs[i] + negs[j]:  # log(0) = -inf: the hinge is 0
                terms.append(x.sum() * 0)
                continue
            stacked = torch.stack(negs[i] + negs[j])
            j_ij = torch.log(torch.exp(stacked).sum()) - cos(x, i, j)
            terms.append(j_ij.clamp(min=0) ** 2)
    return torch.stack(terms).sum() / (2 * len(terms)) if terms else x.sum() * 0


def ref_lifted_generalized(x, labels, margin, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    n, total = len(labels), x.sum() * 0
    for i in range(n):
        ps = [margin - cos(x, i, k, allx) for k in pos_cols(i, labels, ally)]
        qs = [cos(x, i, k, allx) for k in neg_cols(i, labels, ally)]
        if ps and qs:
            total = total + (
                torch.logsumexp(torch.stack(ps), 0) + torch.logsumexp(torch.stack(qs), 0)
            ).clamp(min=0)
    return total / n


def ref_multi_similarity(x, labels, alpha, beta, base, eps, refs=None, ref_labels=None):
    allx, ally = with_refs(x, labels, refs, ref_labels)
    n, total = len(labels), x.sum() * 0
    for i in range(n):
        ps, qs = pos_cols(i, labels, ally), neg_cols(i, labels, ally)
        if eps is not None:
            sim = {k: float(cos(x, i, k, allx).detach()) for k in ps + qs}
            min_pos = min((sim[k] for k in ps), default=math.inf)
            max_neg = max((sim[k] for k in qs), default=-math.inf)
            qs = [k for k in qs if sim[k] + eps > min_pos]
            ps = [k for k in ps if sim[k] - eps < max_neg]
        pos_sum = sum((torch.exp(-alpha * (cos(x, i, k, allx) - base)) for k in ps), x.sum() * 0)
        neg_sum = sum((torch.exp(beta * (cos(x, i, k, allx) - base)) for k in qs), x.sum() * 0)
        total = total + torch.log1p(pos_sum) / alpha + torch.log1p(neg_sum) / beta
    return total / n


CASES = [
    (
        "contrastive",
        lambda: ContrastiveLoss(margin=0.3),
        lambda x, y, *r: ref_contrastive(x, y, 0.3, *r),
    ),
    (
        "binomial",
        lambda: BinomialDevianceLoss(2.0, 50.0, 0.5),
        lambda x, y, *r: ref_binomial(x, y, 2.0, 50.0, 0.5, *r),
    ),
    (
        "triplet_all",
        lambda: TripletMarginLoss(0.2, "all"),
        lambda x, y, *r: ref_triplet_all(x, y, 0.2, *r),
    ),
    (
        "triplet_hard",
        lambda: TripletMarginLoss(0.2, "batch_hard"),
        lambda x, y, *r: ref_triplet_hard(x, y, 0.2, *r),
    ),
    ("lifted", lambda: LiftedStructureLoss(1.0), lambda x, y: ref_lifted(x, y, 1.0)),
    (
        "lifted_generalized",
        lambda: GeneralizedLiftedStructureLoss(1.0),
        lambda x, y, *r: ref_lifted_generalized(x, y, 1.0, *r),
    ),
    (
        "ms",
        lambda: MultiSimilarityLoss(),
        lambda x, y, *r: ref_multi_similarity(x, y, 2.0, 50.0, 0.5, 0.1, *r),
    ),
    (
        "ms_no_mining",
        lambda: MultiSimilarityLoss(epsilon=None),
        lambda x, y, *r: ref_multi_similarity(x, y, 2.0, 50.0, 0.5, None, *r),
    ),
]


@pytest.fixture(params=["one_block", "small_blocks"])
def block_size(request, monkeypatch):
    """Default blocks (one per batch here) and blocks of 1-2 rows (block boundaries);
    small blocks also build ``x x^T`` from its upper triangle in row blocks of 4 rows
    mirrored in tiles of 3 (``scaled_gram``'s path for B > 512)."""
    if request.param == "small_blocks":
        monkeypatch.setattr(core, "BLOCK_ELEMENTS", 30)
        monkeypatch.setattr(core, "GRAM_ROW_BLOCK", 4)
        monkeypatch.setattr(core, "GRAM_MIRROR_TILE", 3)
    return request.param


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed,n,classes", [(0, 13, 4), (1, 9, 2), (2, 17, 6), (3, 5, 5)])
def test_value_and_gradient_equal_brute_force(name, make, ref, seed, n, classes, block_size):
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


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_references_equal_brute_force(name, make, ref, seed, block_size):
    """Extra references (memory / gathered) are columns after the batch; values and
    gradients (to the batch and to references that require grad) match the loops."""
    loss = make()
    x, labels = batch(n=7, classes=3, seed=10 + seed)
    refs, ref_labels = batch(n=6, classes=4, seed=20 + seed)  # labels 3: only in refs
    if not loss.accepts_references:
        with pytest.raises(ValueError, match="does not accept reference"):
            loss(x, labels, refs, ref_labels)
        return
    ours = loss(x, labels, refs, ref_labels)
    expected = ref(x, labels, refs, ref_labels)
    assert torch.allclose(ours, expected, atol=1e-8, rtol=1e-8), (float(ours), float(expected))
    g_ours = torch.autograd.grad(ours, (x, refs))
    g_ref = torch.autograd.grad(expected, (x, refs), allow_unused=True)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, torch.zeros_like(a) if b is None else b, atol=1e-7)


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_loss_from_pairs_equals_forward(name, make, ref):
    """The PairBatch entry point (e.g. a similarity made elsewhere) gives the same
    value and the same gradient through ``S``."""
    x, labels = batch(n=11, classes=3, seed=30)
    loss = make()
    ours = loss(x, labels)
    (g_x,) = torch.autograd.grad(ours, x)
    sim = (x.detach() @ x.detach().T).requires_grad_()
    value = loss.loss_from_pairs(core.PairBatch(sim=sim, labels=labels, ref_labels=labels))
    assert torch.allclose(value, ours, atol=1e-10)
    value.backward()
    assert torch.allclose((sim.grad + sim.grad.T) @ x.detach(), g_x, atol=1e-8)


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


@pytest.mark.parametrize("seed", range(6))
def test_positive_index_equals_mask_columns(seed):
    # any label order, singleton classes, extra references with new and shared labels
    g = torch.Generator().manual_seed(seed)
    n, m = (
        int(torch.randint(1, 30, (1,), generator=g)),
        int(torch.randint(0, 12, (1,), generator=g)),
    )
    labels = torch.randint(0, 8, (n,), generator=g)
    ref_labels = torch.randint(0, 12, (m,), generator=g)
    emb = F.normalize(torch.randn(n, 4, generator=g), dim=1)
    refs = F.normalize(torch.randn(m, 4, generator=g), dim=1)
    pairs = core.build_pairs(emb, labels, refs if m else None, ref_labels if m else None)
    idx, n_pos = pairs.positive_index()
    assert n_pos.tolist() == pairs.pos.sum(dim=1).tolist()
    for q in range(n):
        expected = torch.nonzero(pairs.pos[q]).squeeze(1).tolist()
        assert idx[q, : n_pos[q]].tolist() == expected
        assert (idx[q, n_pos[q] :] == 0).all()


@pytest.mark.parametrize("name", ["lifted", "lifted_generalized"])
@pytest.mark.parametrize("scale,limit", [(1.0, -1.0), (5.0, None)])
def test_lifted_shifted_exponentials_equal_brute_force(monkeypatch, name, scale, limit, block_size):
    """The negatives' e^S shifted by their row maximum (|S| above the limit: large
    norms, or the limit lowered) give the brute-force value and gradient too."""
    from retrievalkit.losses import lifted

    if limit is not None:
        monkeypatch.setattr(lifted, "UNSHIFTED_LIMIT", limit)
    _, make, ref = next(c for c in CASES if c[0] == name)
    x, labels = batch(n=13, classes=4, seed=5)
    x = (x.detach() * scale).requires_grad_()
    ours, expected = make()(x, labels), ref(x, labels)
    assert torch.allclose(ours, expected, atol=1e-8, rtol=1e-8), (float(ours), float(expected))
    g_ours = torch.autograd.grad(ours, x)[0]
    g_ref = torch.autograd.grad(expected, x)[0]
    assert torch.allclose(g_ours, g_ref, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [13, 300, 1031])
def test_gram_matrix_is_symmetric_bit_for_bit(dtype, n):
    """The losses that write ``G + G^T`` directly read ``S_ij`` for ``S_ji``
    (``BlockwiseLoss.symmetric_gradient``): exact because ``x x^T`` is symmetric
    bit for bit with this BLAS."""
    x = F.normalize(torch.randn(n, 64, generator=torch.Generator().manual_seed(n), dtype=dtype))
    sim = x @ x.T
    assert torch.equal(sim, sim.T)


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_gram_gradient_equals_symmetrized_pair_gradient(name, make, ref, block_size):
    """Without references (S = x x^T built inside the loss, its gradient written
    as G or directly as G + G^T) the gradient is (G + G^T) x of the PairBatch path."""
    x, labels = batch(n=29, classes=5, seed=31)
    loss = make()
    (g_x,) = torch.autograd.grad(loss(x, labels), x)
    sim = (x.detach() @ x.detach().T).requires_grad_()
    loss.loss_from_pairs(core.PairBatch(sim=sim, labels=labels, ref_labels=labels)).backward()
    torch.testing.assert_close(g_x, (sim.grad + sim.grad.T) @ x.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_block_same_index_equals_the_same_label_mask(seed):
    """Each block's same-label pairs (by index, self-pairs included) are exactly the
    True entries of its rows of the label-equality mask, for any block size."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 25, (1,), generator=g))
    labels = torch.randint(0, 6, (n,), generator=g)
    ref_labels = torch.randint(0, 9, (int(torch.randint(0, 8, (1,), generator=g)),), generator=g)
    emb = F.normalize(torch.randn(n, 4, generator=g), dim=1)
    refs = F.normalize(torch.randn(len(ref_labels), 4, generator=g), dim=1)
    pairs = core.build_pairs(emb, labels, refs, ref_labels)
    same = core.same_label_mask(pairs.labels, pairs.ref_labels)
    for max_elements in (1, 7, 40, 1 << 18):
        for block in pairs.blocks(max_elements=max_elements, same_pairs=True):
            mask = torch.zeros_like(same[block.rows])
            mask[block.same_index] = True
            assert torch.equal(mask, same[block.rows])


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_pml_keyword_names_are_aliases(name, make, ref):
    """PML's call ``loss(embeddings, labels, ref_emb=..., ref_labels=...)`` is ours with
    ``ref_embeddings`` (the batch stays among the references)."""
    loss = make()
    x, labels = batch(n=7, classes=3, seed=40)
    refs, ref_labels = batch(n=5, classes=4, seed=41)
    if not loss.accepts_references:
        with pytest.raises(ValueError, match="does not accept reference"):
            loss(x, labels, ref_emb=refs, ref_labels=ref_labels)
        return
    by_alias = loss(embeddings=x, labels=labels, ref_emb=refs, ref_labels=ref_labels)
    assert torch.equal(by_alias, loss(x, labels, refs, ref_labels))
    assert not torch.equal(by_alias, loss(x, labels))  # the references were used
    with pytest.raises(ValueError, match="not both"):
        loss(x, labels, refs, ref_labels, ref_emb=refs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 300, 1031])
@pytest.mark.parametrize("alpha", [1.0, 100.0])
def test_scaled_gram_is_symmetric_and_equals_the_full_matmul(monkeypatch, dtype, n, alpha):
    """``scaled_gram`` (upper triangle by row blocks, mirrored tile by tile) is
    symmetric bit for bit and equals ``alpha x x^T`` up to the sums' rounding,
    with blocks and tiles that do not divide ``n``."""
    monkeypatch.setattr(core, "GRAM_ROW_BLOCK", 96)
    monkeypatch.setattr(core, "GRAM_MIRROR_TILE", 40)
    x = F.normalize(
        torch.randn(n, 33, generator=torch.Generator().manual_seed(n), dtype=dtype), dim=1
    )
    gram = core.scaled_gram(x, alpha)
    assert torch.equal(gram, gram.T)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(gram, alpha * (x @ x.T), rtol=tol, atol=tol * alpha)
