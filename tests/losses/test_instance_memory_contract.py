"""Instance loss, cross-batch memory, MS mining properties, and registry contracts."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from retrievalkit.losses import (
    LOSSES,
    CrossBatchMemory,
    CrossModalMemory,
    InstanceLoss,
    LiftedStructureLoss,
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    PairLoss,
    PMLLoss,
    VSELoss,
    build_loss,
)


def unit(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def test_instance_loss_is_two_cross_entropies_with_one_shared_classifier():
    loss = InstanceLoss(num_instances=5, dim=4, scale=3.0).double()
    img, txt = unit(6, 4, 0).requires_grad_(), unit(6, 4, 1).requires_grad_()
    ids = torch.tensor([0, 1, 2, 3, 4, 0])
    value = loss(img, txt, ids)
    w, b = loss.classifier.weight, loss.classifier.bias
    expected = 0.0
    for x in (img, txt):
        for row, target in zip(x, ids, strict=True):
            logits = 3.0 * (w @ row + b)
            expected = expected - torch.log_softmax(logits, 0)[target] / 6
    assert torch.allclose(value, expected, atol=1e-10)
    value.backward()
    assert loss.classifier.weight.grad is not None and img.grad is not None and txt.grad is not None
    assert len(list(loss.parameters())) == 2  # one classifier for both modalities
    with pytest.raises(ValueError, match=r"instance ids must be in \[0, 5\)"):
        loss(img, txt, torch.tensor([0, 1, 2, 3, 4, 5]))


def test_memory_enqueue_order_wraps_oldest_first():
    memory = CrossBatchMemory(MultiSimilarityLoss(), embedding_dim=2, memory_size=5)
    for step in range(3):  # 3 batches of 2: the first one's oldest row is overwritten
        emb = torch.full((2, 2), float(step)) + torch.tensor([[0.0, 0.0], [0.5, 0.5]])
        memory.enqueue(emb, torch.tensor([step * 2, step * 2 + 1]))
    stored, labels = memory.memory()
    assert labels.tolist() == [1, 2, 3, 4, 5]
    assert stored[0].tolist() == [0.5, 0.5] and stored[-1].tolist() == [2.5, 2.5]


def test_memory_after_wrap_around_equals_explicit_references():
    base = MultiSimilarityLoss(epsilon=None)
    memory = CrossBatchMemory(base, embedding_dim=4, memory_size=7).double()
    seen_x, seen_y = [], []
    for step in range(4):  # 4 batches of 3 into 7 slots: wraps twice
        x = unit(3, 4, 40 + step).requires_grad_()
        y = torch.tensor([step % 2, 1, 2])
        kept_x = torch.cat(seen_x)[-7:] if seen_x else None
        kept_y = torch.cat(seen_y)[-7:] if seen_y else None
        value = memory(x, y)
        expected = base(x, y) if kept_x is None else base(x, y, kept_x, kept_y)
        assert torch.allclose(value, expected, atol=1e-12)
        value.backward()  # memory entries are detached: gradients reach x only
        assert x.grad is not None
        seen_x.append(x.detach())
        seen_y.append(y)
    stored, labels = memory.memory()
    assert torch.equal(stored, torch.cat(seen_x)[-7:]) and torch.equal(
        labels, torch.cat(seen_y)[-7:]
    )


def test_memory_loss_uses_memory_before_the_batch_and_warms_up():
    base = MultiSimilarityLoss(epsilon=None)
    memory = CrossBatchMemory(base, embedding_dim=4, memory_size=16, warmup_steps=1).double()
    x1, y1 = unit(6, 4, 2), torch.tensor([0, 0, 1, 1, 2, 2])
    x2, y2 = unit(6, 4, 3), torch.tensor([0, 1, 1, 2, 3, 3])
    assert torch.allclose(memory(x1, y1), base(x1, y1))  # warm-up: no memory yet used
    assert torch.allclose(memory(x2, y2), base(x2, y2, x1, y1))  # memory = batch 1 only
    state = memory.state_dict()
    restored = CrossBatchMemory(base, embedding_dim=4, memory_size=16, warmup_steps=1).double()
    restored.load_state_dict(state)
    for a, b in zip(restored.memory(), memory.memory(), strict=True):
        assert torch.equal(a, b)
    assert int(restored.steps) == 2
    with pytest.raises(ValueError, match="takes no references"):
        CrossBatchMemory(LiftedStructureLoss(), 4, 8)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 24),
    classes=st.integers(1, 6),
    eps=st.floats(0.0, 0.5),
)
def test_ms_mining_rule_holds(seed, n, classes, eps):
    x = unit(n, 5, seed)
    labels = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
    keep_pos, keep_neg = MultiSimilarityMiner(eps)(x, labels)
    sim = x @ x.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool)
    assert not (keep_pos & (~same | eye)).any()  # positives share the label, never self
    assert not (keep_neg & same).any()
    for i in range(n):
        pos = same[i] & ~eye[i]
        neg = ~same[i]
        min_pos = sim[i][pos].min() if pos.any() else torch.tensor(float("inf"))
        max_neg = sim[i][neg].max() if neg.any() else torch.tensor(float("-inf"))
        assert torch.equal(keep_neg[i], neg & (sim[i] + eps > min_pos))
        assert torch.equal(keep_pos[i], pos & (sim[i] - eps < max_neg))


PAIR_LOSSES = [name for name in LOSSES.names() if issubclass(LOSSES.get(name), PairLoss)]


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_every_metric_loss_contract(name):
    if issubclass(LOSSES.get(name), PMLLoss):
        pytest.importorskip("pytorch_metric_learning")
    loss = build_loss(name)
    x = unit(12, 8, 4, dtype=torch.float32).requires_grad_()
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4])
    value = loss(x, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    lone = unit(5, 8, 5, dtype=torch.float32).requires_grad_()
    no_pos = loss(lone, torch.arange(5))  # no positive pair (negatives only)
    assert torch.isfinite(no_pos)
    no_pos.backward()
    assert lone.grad is not None  # stays in the graph (no hang in distributed training)
    single = unit(1, 8, 6, dtype=torch.float32).requires_grad_()
    zero = loss(single, torch.zeros(1, dtype=torch.long))  # B = 1: no pair at all
    assert zero.item() == 0.0
    zero.backward()
    assert single.grad is not None and torch.all(single.grad == 0)


def test_registry_names_cover_the_design():
    assert {
        "vse",
        "contrastive",
        "triplet",
        "lifted",
        "binomial",
        "multi_similarity",
        "smooth_ap",
        "instance",
    } <= set(LOSSES.names())
    with pytest.raises(KeyError, match="unknown loss 'arcface'"):
        build_loss("arcface")


def test_cross_modal_memory_equals_explicit_references_and_keeps_ids():
    vse = VSELoss(max_violation=True)
    memory = CrossModalMemory(vse, embedding_dim=4, memory_size=5, warmup_steps=1).double()
    seen = {"img": [], "txt": [], "ids": []}
    for step in range(4):  # batches of 3 into 5 slots: wraps; ids repeat across steps
        img, txt = unit(3, 4, 60 + step).requires_grad_(), unit(3, 4, 70 + step)
        ids = torch.tensor([step, 10 + step, 1])  # image 1 comes back every step
        kept = {k: torch.cat(v)[-5:] for k, v in seen.items()} if step >= 1 else None
        value = memory(img, txt, ids)
        if step < 1:  # warm-up: memory filled, not used
            expected = vse(img, txt, ids)
        else:
            expected = vse(img, txt, ids, kept["img"], kept["txt"], kept["ids"])
        assert torch.allclose(value, expected, atol=1e-12)
        value.backward()
        assert img.grad is not None
        for key, value in (("img", img.detach()), ("txt", txt), ("ids", ids)):
            seen[key].append(value)
    images, captions, ids = memory.memory()
    assert torch.equal(ids, torch.cat(seen["ids"])[-5:])
    assert torch.equal(images, torch.cat(seen["img"])[-5:])
    assert torch.equal(captions, torch.cat(seen["txt"])[-5:])
    restored = CrossModalMemory(vse, embedding_dim=4, memory_size=5, warmup_steps=1).double()
    restored.load_state_dict(memory.state_dict())
    for a, b in zip(restored.memory(), memory.memory(), strict=True):
        assert torch.equal(a, b)
    assert int(restored.steps) == 4
