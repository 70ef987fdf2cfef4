"""Agreement with pytorch-metric-learning 2.9 where the definitions agree.

- MS loss + miner: PML's MultiSimilarityLoss (per-anchor terms, MeanReducer over
  all anchors) with MultiSimilarityMiner(epsilon) is the same definition.
- Contrastive: PML ContrastiveLoss(pos_margin=1, neg_margin=m, CosineSimilarity)
  with MeanReducer (PML's default AvgNonZeroReducer divides by the non-zero
  terms only; ours by all pairs, as the formula's mean).
- Triplet: TripletMarginLoss with CosineSimilarity and MeanReducer (all
  triplets), and with BatchHardMiner (batch-hard).
- Lifted: PML's GeneralizedLiftedStructureLoss is written for distances with
  pos/neg margins; with CosineSimilarity and neg_margin=0, pos_margin=m it is the
  MS paper's generalized form.
"""

import pytest
import torch
import torch.nn.functional as F

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

from retrievalkit.losses import (  # noqa: E402
    ContrastiveLoss,
    GeneralizedLiftedStructureLoss,
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    TripletMarginLoss,
)


def cosine():
    """Dot product of our already-normalized rows; PML's default would normalize again,
    which leaves values equal but adds the normalization's Jacobian to the gradient."""
    return distances.DotProductSimilarity(normalize_embeddings=False)


def batch(seed, n=32, d=8, classes=6):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    return x, torch.randint(0, classes, (n,), generator=g)


def check(ours, theirs, x):
    assert torch.allclose(ours, theirs.to(ours.dtype), atol=1e-8), (float(ours), float(theirs))
    g1 = torch.autograd.grad(ours, x, retain_graph=True)[0]
    g2 = torch.autograd.grad(theirs, x)[0]
    assert torch.allclose(g1, g2, atol=1e-8)


@pytest.mark.parametrize("seed", range(4))
def test_multi_similarity_with_miner(seed):
    x, y = batch(seed)
    theirs_miner = miners.MultiSimilarityMiner(epsilon=0.1, distance=cosine())
    theirs = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5, distance=cosine())(
        x, y, theirs_miner(x, y)
    )
    check(MultiSimilarityLoss(2, 50, 0.5, epsilon=0.1)(x, y), theirs, x)


@pytest.mark.parametrize("seed", range(3))
def test_ms_miner_keeps_the_same_pairs(seed):
    x, y = batch(seed)
    keep_pos, keep_neg = MultiSimilarityMiner(0.1)(x, y)
    a1, p, a2, n = miners.MultiSimilarityMiner(epsilon=0.1, distance=cosine())(x, y)
    assert set(zip(a1.tolist(), p.tolist(), strict=True)) == set(
        map(tuple, keep_pos.nonzero().tolist())
    )
    assert set(zip(a2.tolist(), n.tolist(), strict=True)) == set(
        map(tuple, keep_neg.nonzero().tolist())
    )


@pytest.mark.parametrize("seed", range(3))
def test_contrastive(seed):
    x, y = batch(seed)
    theirs = losses.ContrastiveLoss(
        pos_margin=1, neg_margin=0.4, distance=cosine(), reducer=reducers.MeanReducer()
    )(x, y)
    check(ContrastiveLoss(margin=0.4)(x, y), theirs, x)


@pytest.mark.parametrize("seed", range(3))
def test_triplet_all_and_batch_hard(seed):
    x, y = batch(seed)
    dist = cosine()
    all_triplets = losses.TripletMarginLoss(
        margin=0.2, distance=dist, reducer=reducers.MeanReducer()
    )(x, y)
    check(TripletMarginLoss(0.2, "all")(x, y), all_triplets, x)
    hard = miners.BatchHardMiner(distance=dist)(x, y)
    batch_hard = losses.TripletMarginLoss(
        margin=0.2, distance=dist, reducer=reducers.MeanReducer()
    )(x, y, hard)
    check(TripletMarginLoss(0.2, "batch_hard")(x, y), batch_hard, x)


@pytest.mark.parametrize("seed", range(3))
def test_generalized_lifted(seed):
    x, y = batch(seed)
    theirs = losses.GeneralizedLiftedStructureLoss(neg_margin=0, pos_margin=1, distance=cosine())(
        x, y
    )
    check(GeneralizedLiftedStructureLoss(margin=1.0)(x, y), theirs, x)


@pytest.mark.parametrize("seed", range(2))
def test_registered_pml_adapters_are_pml_itself(seed):
    """The recipe losses ``pml_*`` give exactly PML's value and gradient (its defaults)."""
    from retrievalkit.losses import build_loss

    x, y = batch(seed)
    ms = losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5)
    mined = miners.MultiSimilarityMiner(epsilon=0.2)(x, y)
    check(build_loss("pml_multi_similarity", beta=40, epsilon=0.2)(x, y), ms(x, y, mined), x)
    check(
        build_loss("pml_multi_similarity", epsilon=None)(x, y),
        losses.MultiSimilarityLoss()(x, y),
        x,
    )
    triplet = losses.TripletMarginLoss(margin=0.1)
    check(build_loss("pml_triplet", margin=0.1)(x, y), triplet(x, y), x)
    hard = miners.BatchHardMiner()(x, y)
    check(build_loss("pml_triplet", margin=0.1, mining="batch_hard")(x, y), triplet(x, y, hard), x)
    contrastive = losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.8)
    check(build_loss("pml_contrastive", pos_margin=0.1, neg_margin=0.8)(x, y), contrastive(x, y), x)
    with pytest.raises(ValueError, match="mining must be"):
        build_loss("pml_triplet", mining="semi_hard")
