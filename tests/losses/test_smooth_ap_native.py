"""Smooth-AP's fused C kernel: it builds here, and equals the torch pass and the formula."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import SmoothAPLoss, native, smooth_ap_native
from retrievalkit.losses.smooth_ap import smooth_ap_per_query


def dense_loss(emb: torch.Tensor, labels: torch.Tensor, refs, ref_labels, tau, include_self):
    """``1 - mean AP`` from the formula, one query at a time, float64 ``[k, R]`` sums."""
    all_emb = emb if refs is None else torch.cat([emb, refs])
    all_labels = labels if ref_labels is None else torch.cat([labels, ref_labels])
    sim = emb.double() @ all_emb.double().T
    aps = []
    for q in range(emb.shape[0]):
        others = torch.arange(all_emb.shape[0]) != q
        positive = (all_labels == labels[q]) & others
        if not bool(positive.any()):
            continue
        omega = others.clone()
        if include_self:
            positive[q] = omega[q] = True
        anchors = sim[q, positive]  # [k]
        sig = torch.sigmoid((sim[q].unsqueeze(0) - anchors.unsqueeze(1)) / tau)  # [k, R]
        numer = 0.5 + (sig * positive).sum(dim=1)  # j = i gives G(0) = 0.5: "1 + sum_{j != i}"
        denom = 0.5 + (sig * omega).sum(dim=1)
        aps.append((numer / denom).mean())
    return 1 - torch.stack(aps).mean()


def loss_and_grad(emb, labels, refs, ref_labels, tau, include_self):
    emb = emb.clone().requires_grad_()
    loss = SmoothAPLoss(tau, include_self=include_self)(emb, labels, refs, ref_labels)
    loss.backward()
    return loss.detach(), emb.grad


def batch(n: int, dim: int, classes: int, seed: int, refs: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    if not refs:
        return emb, labels, None, None
    ref = F.normalize(torch.randn(refs, dim, generator=g), dim=1)
    return emb, labels, ref, torch.randint(0, classes, (refs,), generator=g)


def test_the_kernel_builds_on_this_machine():
    """``make install`` installs a C compiler; without the kernel Smooth-AP is 1.2-1.5x slower."""
    assert native.load_library(smooth_ap_native.SOURCE) is not None


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the kernel's calls (so a test knows which path ran)."""
    calls = []
    real = smooth_ap_native.group_ap

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(smooth_ap_native, "group_ap", counted)
    return calls


CASES = {
    # n, dim, classes, seed, refs: unequal classes in any order, singletons, references
    "shuffled": (37, 16, 9, 0, 0),
    "references": (24, 8, 5, 1, 40),
    "pk_like": (64, 32, 16, 2, 0),
}


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("tau", [0.01, 0.1])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_equals_torch_pass_and_formula(monkeypatch, kernel_calls, case, tau, include_self):
    emb, labels, refs, ref_labels = batch(*CASES[case])
    kernel = loss_and_grad(emb, labels, refs, ref_labels, tau, include_self)
    assert kernel_calls, "the float32 CPU loss did not run the kernel"
    monkeypatch.setenv("RETRIEVALKIT_NATIVE", "0")
    calls_before = len(kernel_calls)
    torch_pass = loss_and_grad(emb, labels, refs, ref_labels, tau, include_self)
    assert len(kernel_calls) == calls_before, "RETRIEVALKIT_NATIVE=0 still ran the kernel"
    scale = float(torch_pass[1].abs().max())
    torch.testing.assert_close(kernel[0], torch_pass[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(kernel[1], torch_pass[1], rtol=1e-4, atol=1e-5 * scale)
    emb64 = emb.double().requires_grad_()
    refs64 = None if refs is None else refs.double()
    formula = dense_loss(emb64, labels, refs64, ref_labels, tau, include_self)
    formula.backward()
    torch.testing.assert_close(kernel[0].double(), formula.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(kernel[1].double(), emb64.grad, rtol=1e-4, atol=1e-5 * scale)


def test_per_query_ap_and_its_backward_with_any_upstream_gradient(monkeypatch, kernel_calls):
    """``smooth_ap_per_query`` (forward without gradient, backward with a weight per query)."""
    emb, labels, _, _ = batch(30, 16, 6, 3)
    weight = torch.randn(30, generator=torch.Generator().manual_seed(4))
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("RETRIEVALKIT_NATIVE", flag)
        sim = (emb @ emb.T).requires_grad_()
        pos = (labels[:, None] == labels[None]) & ~torch.eye(30, dtype=torch.bool)
        ap, valid = smooth_ap_per_query(sim, pos)
        (ap * weight).sum().backward()
        results.append((ap.detach(), valid, sim.grad))
    assert kernel_calls
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-6)
    assert torch.equal(results[0][1], results[1][1])
    torch.testing.assert_close(results[0][2], results[1][2], rtol=1e-4, atol=1e-6)


def test_saturated_and_infinite_similarities_stay_finite(monkeypatch):
    """Differences far beyond exp's range (tau = 1e-4) and +-inf similarities: the kernel
    gives the torch pass's values (sigmoid 0 or 1, no NaN, gradient 0 where saturated)."""
    g = torch.Generator().manual_seed(5)
    sim = torch.rand(12, 12, generator=g) * 2 - 1
    sim[0, 5], sim[3, 7] = float("inf"), float("-inf")
    labels = torch.arange(12) // 3
    pos = (labels[:, None] == labels[None]) & ~torch.eye(12, dtype=torch.bool)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("RETRIEVALKIT_NATIVE", flag)
        leaf = sim.clone().requires_grad_()
        ap, _ = smooth_ap_per_query(leaf, pos, temperature=1e-4)
        ap.sum().backward()
        results.append((ap.detach(), leaf.grad))
    finite = torch.isfinite(results[1][0])
    torch.testing.assert_close(results[0][0][finite], results[1][0][finite], rtol=0, atol=1e-6)
    assert torch.equal(torch.isnan(results[0][0]), torch.isnan(results[1][0]))


def test_threads_do_not_change_the_result():
    """Queries are split over threads by rows: bit-identical to one thread."""
    emb, labels, _, _ = batch(512, 32, 128, 6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = loss_and_grad(emb, labels, None, None, 0.01, False)
        torch.set_num_threads(2)
        two = loss_and_grad(emb, labels, None, None, 0.01, False)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_float64_and_large_classes_take_the_torch_pass(monkeypatch, kernel_calls):
    emb, labels, _, _ = batch(16, 8, 4, 7)
    loss_and_grad(emb.double(), labels, None, None, 0.01, False)
    monkeypatch.setattr(smooth_ap_native, "MAX_SCRATCH_BYTES", 4 * 16 - 1)  # below one row
    loss_and_grad(emb, labels, None, None, 0.01, False)
    assert not kernel_calls


def test_no_compiler_falls_back_with_one_logged_line(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RETRIEVALKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.WARNING, logger="retrievalkit.losses.native"):
        assert native.load_library.__wrapped__(smooth_ap_native.SOURCE) is None
    assert len(caplog.records) == 1
    assert "smooth_ap_kernel.c runs without its fused kernel" in caplog.records[0].getMessage()


def test_a_failed_build_names_the_file_and_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVALKIT_CACHE", str(tmp_path))
    source = tmp_path / "broken.c"
    source.write_text("int f( {\n")
    with pytest.raises(RuntimeError, match=r"could not build broken\.c: .*error"):
        native.build(source, "cc")
    assert not list((tmp_path / "native").glob("*.so"))


def test_the_build_is_cached_per_source(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVALKIT_CACHE", str(tmp_path))
    source = tmp_path / "ok.c"
    source.write_text("int answer(void) { return 42; }\n")
    first = native.build(source, "cc")
    assert native.build(source, "cc") == first
    source.write_text("int answer(void) { return 43; }\n")
    assert native.build(source, "cc") != first


@pytest.mark.parametrize("native_on", ["1", "0"])
def test_a_nan_embedding_gives_a_nan_loss(monkeypatch, native_on):
    """NaN reaches the loss on both passes (the trainer's non-finite guard looks there)."""
    monkeypatch.setenv("RETRIEVALKIT_NATIVE", native_on)
    emb, labels, _, _ = batch(20, 8, 5, 8)
    emb[4, 1] = float("nan")
    loss, grad = loss_and_grad(emb, labels, None, None, 0.01, False)
    assert torch.isnan(loss) and torch.isnan(grad).any()
