"""Smooth-AP: brute force from the formula, PML agreement/disagreement, edges."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import LOSSES, SmoothAPLoss, build_loss, build_pairs
from retrievalkit.losses.smooth_ap import smooth_ap_per_query


def brute_force_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    tau: float,
    include_self: bool,
    refs: torch.Tensor | None = None,
    ref_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """``1 - mean_q AP_q`` with python loops over q, i, j, straight from METHODS.md 4."""
    all_emb = emb if refs is None else torch.cat([emb, refs])
    all_labels = (labels if ref_labels is None else torch.cat([labels, ref_labels])).tolist()
    sim = emb @ all_emb.T
    aps = []
    for q in range(emb.shape[0]):
        positives = [j for j in range(len(all_labels)) if all_labels[j] == all_labels[q] and j != q]
        if not positives:
            continue
        omega = [j for j in range(len(all_labels)) if j != q]
        if include_self:
            positives, omega = [*positives, q], [*omega, q]
        total = 0.0
        for i in positives:
            numer = 1 + sum(
                torch.sigmoid((sim[q, j] - sim[q, i]) / tau) for j in positives if j != i
            )
            denom = 1 + sum(torch.sigmoid((sim[q, j] - sim[q, i]) / tau) for j in omega if j != i)
            total = total + numer / denom
        aps.append(total / len(positives))
    return 1 - torch.stack(aps).mean()


def exact_ap_loss(emb: torch.Tensor, labels: torch.Tensor, include_self: bool) -> float:
    """``1 - mAP`` of the true ranking (sorting, no ties) over queries with a positive."""
    sim, labels = emb @ emb.T, labels.tolist()
    aps = []
    for q in range(emb.shape[0]):
        order = [
            j for j in torch.argsort(sim[q], descending=True).tolist() if include_self or j != q
        ]
        hits = [labels[j] == labels[q] and (include_self or j != q) for j in order]
        if sum(hits) - int(include_self) == 0:
            continue
        precisions = [sum(hits[: r + 1]) / (r + 1) for r, hit in enumerate(hits) if hit]
        aps.append(sum(precisions) / len(precisions))
    return 1 - sum(aps) / len(aps)


def random_embeddings(n: int, dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g, dtype=dtype), dim=1)


def shuffled(labels: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(labels)
    return t[torch.randperm(len(labels), generator=g)]


LABEL_CASES = {
    # odd size, unequal class sizes, a singleton class (query without positive), shuffled
    "unequal_shuffled": shuffled([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4], seed=1),
    "pk_sorted": torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]),
    "many_sizes": shuffled([0] * 6 + [1] * 4 + [2] * 3 + [3] * 2 + [4, 5], seed=2),
}


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
@pytest.mark.parametrize("tau", [0.01, 0.2])
def test_matches_brute_force_value_and_gradient(case, include_self, tau):
    labels = LABEL_CASES[case]
    emb = random_embeddings(len(labels), 6, seed=3).requires_grad_()
    ours = SmoothAPLoss(temperature=tau, include_self=include_self)(emb, labels)
    (g_ours,) = torch.autograd.grad(ours, emb)
    ref = brute_force_loss(emb, labels, tau, include_self)
    (g_ref,) = torch.autograd.grad(ref, emb)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)
    assert g_ref.abs().max() > 1e-4  # the gradient comparison is not trivially 0 == 0


@pytest.mark.parametrize("include_self", [False, True])
def test_matches_brute_force_with_references(include_self):
    labels = torch.tensor([2, 0, 1, 2, 5, 0, 7])  # 5 and 7 only have positives among refs/none
    ref_labels = torch.tensor([0, 5, 2, 9, 1])
    emb = random_embeddings(7, 5, seed=4).requires_grad_()
    refs = random_embeddings(5, 5, seed=5).requires_grad_()
    ours = SmoothAPLoss(temperature=0.1, include_self=include_self)(emb, labels, refs, ref_labels)
    g_ours = torch.autograd.grad(ours, (emb, refs))
    ref = brute_force_loss(emb, labels, 0.1, include_self, refs, ref_labels)
    g_ref = torch.autograd.grad(ref, (emb, refs))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("include_self", [False, True])
def test_chunk_size_and_grouping_do_not_change_result(include_self):
    labels = shuffled([i for i in range(9) for _ in range(1 + i % 5)], seed=6)
    emb = random_embeddings(len(labels), 8, seed=7)
    sim = (emb @ emb.T).requires_grad_()
    pos = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)
    results = []
    for chunk in (1, 50, 1 << 20):
        ap, valid = smooth_ap_per_query(sim, pos, 0.05, include_self, chunk_elements=chunk)
        (grad,) = torch.autograd.grad((ap * torch.arange(len(labels))).sum(), sim)
        results.append((ap, valid, grad))
    for ap, valid, grad in results[1:]:
        torch.testing.assert_close(ap, results[0][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(grad, results[0][2], rtol=0, atol=1e-12)
        assert torch.equal(valid, results[0][1])


@pytest.mark.parametrize("chunk", [1, 50, 1 << 20])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("include_self", [False, True])
def test_fused_loss_gradient_equals_per_query_backward(monkeypatch, chunk, dtype, include_self):
    # the loss computes dL/dS in its forward pass; smooth_ap_per_query recomputes the
    # sigmoids in backward: same value and gradient, for any chunking of the queries
    import retrievalkit.losses.smooth_ap as smooth_ap

    monkeypatch.setattr(smooth_ap, "DEFAULT_CHUNK_ELEMENTS", chunk)
    labels = shuffled([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 5], seed=22)
    base = random_embeddings(len(labels), 7, seed=23).to(dtype)
    fused_emb, split_emb = base.clone().requires_grad_(), base.clone().requires_grad_()
    fused = SmoothAPLoss(temperature=0.05, include_self=include_self)(fused_emb, labels)
    pairs = build_pairs(split_emb, labels)
    ap, valid = smooth_ap_per_query(pairs.sim, pairs.pos, 0.05, include_self)
    split = 1 - ap.sum() / valid.sum()
    fused.backward()
    split.backward()
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(fused, split.to(fused.dtype), rtol=0, atol=tol)
    assert fused_emb.grad.dtype == dtype
    # float32 sums in another order, then rounded to float16: 2 ulps, or 1e-4 of the scale
    scale = split_emb.grad.abs().max().item()
    rtol, atol = (0, 1e-12) if dtype == torch.float64 else (2e-3, 1e-4 * scale)
    torch.testing.assert_close(fused_emb.grad, split_emb.grad, rtol=rtol, atol=atol)


def test_gradcheck_on_similarities():
    labels = torch.tensor([1, 0, 1, 1, 0, 2])
    emb = random_embeddings(6, 4, seed=8)
    sim = (emb @ emb.T).requires_grad_()
    pos = (labels[:, None] == labels[None, :]) & ~torch.eye(6, dtype=torch.bool)
    for include_self in (False, True):
        assert torch.autograd.gradcheck(
            lambda s, inc=include_self: smooth_ap_per_query(s, pos, 0.3, inc)[0], (sim,)
        )


# --- pytorch-metric-learning -------------------------------------------------------------
# PML 2.9 SmoothAPLoss: every sample counts as its own positive and is in the retrieval set
# (our include_self=True), loss = mean over all samples of 1 - AP. It views the batch as
# [B // n_classes, n_classes] groups of consecutive samples, which are the classes only when
# labels are sorted and n_classes == samples per class.


def pml_smooth_ap():
    from pytorch_metric_learning.losses import SmoothAPLoss as PMLSmoothAPLoss

    return PMLSmoothAPLoss(temperature=0.01)


@pytest.mark.parametrize("num_classes", [3, 4])
def test_matches_pml_where_its_grouping_is_right(num_classes):
    labels = torch.arange(num_classes).repeat_interleave(num_classes)  # sorted, P == K
    raw = torch.randn(len(labels), 16, generator=torch.Generator().manual_seed(9))
    raw_pml, raw_ours = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    pml = pml_smooth_ap()(raw_pml, labels)  # PML L2-normalizes inside
    ours = SmoothAPLoss(temperature=0.01, include_self=True)(F.normalize(raw_ours, dim=1), labels)
    pml.backward()
    ours.backward()
    torch.testing.assert_close(ours, pml, rtol=0, atol=1e-5)
    torch.testing.assert_close(raw_ours.grad, raw_pml.grad, rtol=1e-4, atol=1e-5)


def test_pml_is_wrong_when_classes_differ_from_samples_per_class():
    labels = torch.arange(12).repeat_interleave(4)  # B = 48: 12 classes x 4, sorted
    emb = random_embeddings(48, 8, seed=10, dtype=torch.float32)
    ours = SmoothAPLoss(temperature=0.01, include_self=True)(emb, labels)
    brute = brute_force_loss(emb.double(), labels, 0.01, include_self=True)
    pml = pml_smooth_ap()(emb, labels)
    torch.testing.assert_close(ours.double(), brute, rtol=0, atol=1e-5)
    assert abs(pml.item() - brute.item()) > 1e-3  # PML groups 4 blocks of 12 samples


# --- edge cases ---------------------------------------------------------------------------


def test_no_query_with_a_positive_gives_zero_in_graph():
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5])):
        emb = random_embeddings(len(labels), 3, seed=11).requires_grad_()
        for include_self in (False, True):
            loss = SmoothAPLoss(include_self=include_self)(emb, labels)
            assert loss.requires_grad and loss.item() == 0.0
            (grad,) = torch.autograd.grad(loss, emb)
            assert torch.equal(grad, torch.zeros_like(emb))


def test_query_without_positive_is_skipped():
    labels = torch.tensor([0, 0, 1, 1, 1, 7])  # sample 5 has no positive
    emb = random_embeddings(6, 4, seed=12)
    full = SmoothAPLoss(0.05)(emb, labels)
    pos = (labels[:, None] == labels) & ~torch.eye(6, dtype=torch.bool)
    ap, valid = smooth_ap_per_query(emb @ emb.T, pos, temperature=0.05)
    assert valid.tolist() == [True] * 5 + [False] and ap[5] == 0
    torch.testing.assert_close(full, 1 - ap[:5].mean(), rtol=0, atol=1e-12)
    # the singleton still counts as a negative for the others: removing it changes the loss
    assert abs(SmoothAPLoss(0.05)(emb[:5], labels[:5]).item() - full.item()) > 1e-6


@pytest.mark.parametrize("include_self", [False, True])
def test_one_class_is_perfect(include_self):
    emb = random_embeddings(5, 4, seed=13).requires_grad_()
    loss = SmoothAPLoss(include_self=include_self)(emb, torch.zeros(5, dtype=torch.long))
    assert abs(loss.item()) < 1e-12  # every retrieved item is a positive: numer == denom


@pytest.mark.parametrize(("include_self", "expected"), [(False, 17 / 30), (True, 17 / 35)])
def test_identical_embeddings_all_ties(include_self, expected):
    # All S equal -> every G = G(0) = 1/2. Query in a class of n (B = 6):
    # exclude self: (1 + (n-2)/2) / (1 + 4/2): n=3 -> 1/2, n=2 -> 1/3; mean over 5 = 13/30.
    # include self: (1 + (n-1)/2) / (1 + 5/2): n=3 -> 4/7, n=2 -> 3/7; mean over 5 = 18/35.
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    emb = F.normalize(torch.ones(6, 4, dtype=torch.float64), dim=1)
    loss = SmoothAPLoss(include_self=include_self)(emb, labels)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("include_self", [False, True])
def test_small_temperature_approaches_exact_ap(include_self):
    labels = shuffled([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3], seed=14)
    emb = random_embeddings(11, 6, seed=15)
    sim = emb @ emb.T
    gaps = sim.sort(dim=1).values.diff(dim=1)
    assert gaps.min() > 1e-4  # no ties: the exact ranking is well defined
    exact = exact_ap_loss(emb, labels, include_self)
    errors = [
        abs(SmoothAPLoss(tau, include_self)(emb, labels).item() - exact)
        for tau in (0.1, 1e-2, 1e-6)
    ]
    assert errors[-1] < 1e-9
    assert errors[0] > 1e-3  # a large temperature really is smooth


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_compute_in_float32(dtype):
    labels = shuffled([0, 0, 1, 1, 1, 2, 2, 3], seed=16)
    emb = random_embeddings(8, 16, seed=17, dtype=torch.float32).to(dtype).requires_grad_()
    loss = SmoothAPLoss()(emb, labels)
    assert loss.dtype == torch.float32
    ref = SmoothAPLoss()(emb.detach().float(), labels)
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-6)
    loss.backward()
    assert emb.grad.dtype == dtype and torch.isfinite(emb.grad.float()).all()


def test_under_bfloat16_autocast():
    labels = shuffled([0, 0, 1, 1, 1, 2, 2, 3, 3, 3], seed=18)
    layer = torch.nn.Linear(12, 16)
    x = torch.randn(10, 12, generator=torch.Generator().manual_seed(19))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = F.normalize(layer(x), dim=1)
        loss = SmoothAPLoss()(emb, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref = SmoothAPLoss()(emb.detach().float(), labels)
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-6)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def test_memory_is_quadratic_not_cubic():
    # B = 1024: one B x B x B float tensor is 4 GiB; B x B floats are 4 MiB.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            before = _status_mib("VmRSS")
            f.write("5")  # reset the peak-RSS mark
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs")
    labels = shuffled([i // 4 for i in range(1024)], seed=24)
    emb = random_embeddings(1024, 8, seed=25, dtype=torch.float32).requires_grad_()
    loss = SmoothAPLoss()(emb, labels)
    loss.backward()
    peak = _status_mib("VmHWM") - before
    assert torch.isfinite(loss) and emb.grad.abs().sum() > 0
    assert peak < 128, f"peak RSS grew by {peak:.0f} MiB (B x B float32 = 4 MiB)"


# --- contract -----------------------------------------------------------------------------


def test_registered_and_configurable():
    assert "smooth_ap" in LOSSES.names()
    loss = build_loss("smooth_ap", temperature=0.05, include_self=True)
    assert isinstance(loss, SmoothAPLoss) and loss.temperature == 0.05 and loss.include_self


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), TypeError, "integer"),
        (torch.tensor([[0, 1], [0, 1]]), ValueError, "1-D"),
        (torch.tensor([0, 1, 0]), ValueError, "4 rows but its labels have 3"),
    ],
)
def test_bad_labels_raise_clear_errors(labels, error, match):
    with pytest.raises(error, match=match):
        SmoothAPLoss()(random_embeddings(4, 3, seed=20), labels)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="temperature"):
        SmoothAPLoss(temperature=0.0)
    emb, labels = random_embeddings(4, 3, seed=21), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="together"):
        SmoothAPLoss()(emb, labels, ref_embeddings=emb)
    with pytest.raises(ValueError, match="bool tensor shaped like sim"):
        smooth_ap_per_query(emb @ emb.T, torch.ones(4, 3, dtype=torch.bool))


@pytest.mark.parametrize("gram_blocks", [None, (5, 2)])
@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("chunk", [1, 40])
def test_consecutive_rows_in_several_chunks_match_brute_force(
    monkeypatch, chunk, include_self, gram_blocks
):
    """Class-sorted labels make one group of consecutive rows, read and written as
    slices of S chunk by chunk (no index): same value and gradient as the loop,
    also when ``x x^T / tau`` is built from several row blocks and mirror tiles."""
    import retrievalkit.losses.core as core
    import retrievalkit.losses.smooth_ap as smooth_ap

    monkeypatch.setattr(smooth_ap, "DEFAULT_CHUNK_ELEMENTS", chunk)
    if gram_blocks is not None:
        monkeypatch.setattr(core, "GRAM_ROW_BLOCK", gram_blocks[0])
        monkeypatch.setattr(core, "GRAM_MIRROR_TILE", gram_blocks[1])
    labels = torch.arange(12) // 3
    emb = random_embeddings(len(labels), 6, seed=8).requires_grad_()
    ours = SmoothAPLoss(temperature=0.05, include_self=include_self)(emb, labels)
    (g_ours,) = torch.autograd.grad(ours, emb)
    ref = brute_force_loss(emb, labels, 0.05, include_self)
    (g_ref,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)
