"""VSE++'s fused C kernels (float32 CPU; MH's hardest negatives and products, SH's
costs and gradient): they build here, run where they should, and equal the torch
code (values bit for bit) and the float64 formula."""

from __future__ import annotations

import pytest
import torch

from retrievalkit.losses import VSELoss, native, vse_native
from retrievalkit.losses import vse as vse_module
from tests.losses.test_vse import masked_reference


def test_the_kernel_builds_on_this_machine():
    assert native.load_library(vse_native.SOURCE) is not None


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the kernel calls (MH forward terms, MH backward products, SH terms)."""
    calls = []
    for name in ("hardest", "hardest_products", "sum_hinges"):
        real = getattr(vse_native, name)

        def counted(*args, real=real, name=name):
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(vse_native, name, counted)
    return calls


def run(img, txt, ids, small, native_on, monkeypatch, scale=1.0, max_violation=True):
    """Value and gradients of ``VSELoss`` on one path, with or without the kernels."""
    monkeypatch.setattr(vse_module, "use_small_path", lambda num: small)
    monkeypatch.setenv("RETRIEVALKIT_NATIVE", "1" if native_on else "0")
    leaves = [t.detach().clone().requires_grad_() for t in (img, txt)]
    loss = VSELoss(0.2, max_violation)(*leaves, ids)
    (loss * scale).backward()
    return loss.detach(), *(t.grad for t in leaves)


def batches():
    """float32 batches: random unit vectors (no ties), 3-bit coordinates (exact dot
    products: ties, zero hinges), all-equal rows (everything ties); ids distinct or
    repeated (captions of one image)."""
    g = torch.Generator().manual_seed(0)
    for n, dim in ((1, 4), (2, 8), (33, 16), (128, 32), (256, 32), (300, 16)):
        unit = torch.nn.functional.normalize(torch.randn(2, n, dim, generator=g), dim=2)
        coarse = torch.randint(-2, 3, (2, n, dim), generator=g).float() / 4
        ids = torch.randint(0, max(1, n // 3), (n,), generator=g)
        for img, txt in (unit, coarse, torch.ones(2, n, dim) / dim**0.5):
            yield img, txt, None
            yield img, txt, ids


@pytest.mark.parametrize("small", [True, False])
def test_kernel_equals_the_torch_code(small, monkeypatch, kernel_calls):
    """Same value bit for bit (same costs, same sums); gradients to float32 rounding
    (the same terms added in another order), ties and repeated ids included."""
    for img, txt, ids in batches():
        for scale in (1.0, 3.0):
            kernel = run(img, txt, ids, small, True, monkeypatch, scale)
            torch_code = run(img, txt, ids, small, False, monkeypatch, scale)
            assert torch.equal(kernel[0], torch_code[0])
            for a, b in zip(kernel[1:], torch_code[1:], strict=True):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # the small path's terms and both paths' products ran in the kernel
    assert kernel_calls.count("hardest_products") > 0
    assert ("hardest" in kernel_calls) == small


def test_sum_kernel_equals_the_torch_code_bit_for_bit(monkeypatch, kernel_calls):
    """SH (small path): the same cost matrices summed by torch, the same 0/1 and
    integer ``G``, the same backward matmuls: equal bit for bit."""
    for img, txt, ids in batches():
        kernel = run(img, txt, ids, True, True, monkeypatch, 3.0, max_violation=False)
        torch_code = run(img, txt, ids, True, False, monkeypatch, 3.0, max_violation=False)
        for a, b in zip(kernel, torch_code, strict=True):
            assert torch.equal(a, b)
    assert "sum_hinges" in kernel_calls


@pytest.mark.parametrize("max_violation", [True, False])
def test_kernel_equals_the_float64_formula(max_violation, monkeypatch):
    for img, txt, ids in batches():
        ids = torch.arange(img.shape[0]) if ids is None else ids
        value, *grads = run(img, txt, ids, True, True, monkeypatch, 1.0, max_violation)
        exact = [t.double().requires_grad_() for t in (img, txt)]
        ref = masked_reference(*exact, ids, 0.2, max_violation)
        torch.testing.assert_close(value.double(), ref, rtol=1e-5, atol=1e-4)
        for a, b in zip(grads, torch.autograd.grad(ref, exact), strict=True):
            # float32 matmuls of SH's dense G (counts up to 2 B): 1e-4 absolute
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-4)


def test_kernel_runs_only_on_float32_cpu(monkeypatch, kernel_calls):
    img = torch.nn.functional.normalize(torch.randn(16, 8, dtype=torch.float64), dim=1)
    run(img, img.flip(0), None, True, True, monkeypatch)  # float64: the torch code
    run(img.float(), img.flip(0).float(), None, True, False, monkeypatch)  # turned off
    assert kernel_calls == []
    run(img.float(), img.flip(0).float(), None, True, True, monkeypatch)
    assert kernel_calls == ["hardest", "hardest_products"]


def test_hardest_marks_ties_and_rows_without_negatives():
    """One row whose two largest costs tie (its weight 0, marked tied), one whose
    maximum is a single negative, and with one id for everything no negatives at all."""
    sim = torch.tensor([[1.0, 0.75, 0.75], [0.5, 1.0, 0.0], [0.0, 0.25, 1.0]])
    costs, weight, index, tied, num_tied = vse_native.hardest(sim, None, 0.5)
    # image 0: h = 0.25 twice (tie); image 1: h = 0 (no cost); image 2: h = -0.25
    # caption 0 (column 0): 0.5 vs S_00 = 1 -> 0; caption 1: 0.75 - 1 + 0.5 = 0.25 (row 0)
    # caption 2: 0.75 - 1 + 0.5 = 0.25 (row 0)
    assert costs.tolist() == [0.25, 0.0, 0.0, 0.0, 0.25, 0.25]
    assert weight.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert tied.tolist() == [True, False, False, False, False, False] and num_tied == 1
    assert index[4].item() == 0 and index[5].item() == 0
    costs, weight, _, tied, num_tied = vse_native.hardest(
        sim, torch.zeros(3, dtype=torch.long), 0.5
    )
    assert costs.tolist() == [0.0] * 6 and weight.tolist() == [0.0] * 6 and num_tied == 0


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("native_on", [True, False])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_nan_similarity_gives_a_nan_loss(monkeypatch, max_violation, small, native_on, sign):
    """NaN in the embeddings must reach the loss (the trainer's guard looks there), on
    every path: an ordered key or a false comparison would otherwise hide it as a 0
    cost. Both NaN signs (a NaN with its sign bit set ranks lowest as a key)."""
    g = torch.Generator().manual_seed(3)
    img, txt = torch.nn.functional.normalize(torch.randn(2, 40, 16, generator=g), dim=2)
    img[7, 3] = sign * float("nan")
    loss, d_img, d_txt = run(img, txt, None, small, native_on, monkeypatch, 1.0, max_violation)
    assert torch.isnan(loss)
    assert torch.isnan(d_img).any() or torch.isnan(d_txt).any()
