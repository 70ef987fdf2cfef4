"""VSELoss against vsepp's ContrastiveLoss formula and a loop written from the paper."""

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import VSELoss, hinge, hinge_small
from retrievalkit.losses import vse as vse_module
from retrievalkit.losses.vsepp_reference import vsepp_contrastive


def loop_formula(img, txt, ids, margin, max_violation):
    """METHODS.md 1: per matched pair, hinge over negatives (different image id)."""
    total = img.new_zeros(())
    n = img.shape[0]
    for i in range(n):
        s_ii = img[i] @ txt[i]
        caption_costs = [
            (margin - s_ii + img[i] @ txt[j]).clamp(min=0) for j in range(n) if ids[j] != ids[i]
        ]
        image_costs = [
            (margin - s_ii + img[j] @ txt[i]).clamp(min=0) for j in range(n) if ids[j] != ids[i]
        ]
        for costs in (caption_costs, image_costs):
            if costs:
                stacked = torch.stack(costs)
                total = total + (stacked.max() if max_violation else stacked.sum())
    return total


def embeddings(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1).requires_grad_()
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1).requires_grad_()
    return img, txt


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("n", [1, 2, 7, 33])
def test_equals_vsepp_when_ids_distinct(max_violation, n):
    img, txt = embeddings(n, 16, seed=n)
    ours = VSELoss(0.2, max_violation)(img, txt)
    ref = vsepp_contrastive(img, txt, 0.2, max_violation)
    assert torch.allclose(ours, ref, atol=1e-10)
    g_ours = torch.autograd.grad(ours, (img, txt), allow_unused=True)
    g_ref = torch.autograd.grad(vsepp_contrastive(img, txt, 0.2, max_violation), (img, txt))
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("max_violation", [True, False])
def test_shared_image_ids_are_not_negatives(max_violation):
    img, txt = embeddings(9, 8, seed=3)
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4])
    ours = VSELoss(0.2, max_violation)(img, txt, ids)
    ref = loop_formula(img, txt, ids, 0.2, max_violation)
    assert torch.allclose(ours, ref, atol=1e-10)
    grads = torch.autograd.grad(ours, (img, txt))
    ref_grads = torch.autograd.grad(loop_formula(img, txt, ids, 0.2, max_violation), (img, txt))
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    # and masking changes the value compared with treating them as negatives
    assert not torch.allclose(ours, VSELoss(0.2, max_violation)(img, txt))


def test_mean_reduction_divides_by_batch():
    img, txt = embeddings(6, 8, seed=1)
    total = VSELoss(reduction="sum")(img, txt)
    assert torch.allclose(VSELoss(reduction="mean")(img, txt), total / 6)


def test_one_image_only_gives_zero_in_graph():
    img, txt = embeddings(4, 8, seed=2)
    loss = VSELoss()(img, txt, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert img.grad is not None and torch.all(img.grad == 0)


def test_identical_embeddings_give_collapse_value():
    img = F.normalize(torch.ones(5, 4, dtype=torch.float64), dim=1)
    loss = VSELoss(margin=0.2, max_violation=True)(img, img.clone())
    assert loss.item() == pytest.approx(2 * 5 * 0.2)  # the vsepp#27 collapse value


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_fp32(dtype):
    img, txt = embeddings(12, 32, seed=5, dtype=torch.float32)
    ref = VSELoss()(img.detach(), txt.detach())
    low = VSELoss()(img.detach().to(dtype), txt.detach().to(dtype))
    assert low.dtype == torch.float32
    assert torch.allclose(low, ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("max_violation", [False, True])
def test_under_autocast(max_violation):
    """Under bfloat16 autocast the similarities are still computed in float32: loss and
    gradients equal the float32 ones (1e-6), while bfloat16 matmul inputs would
    move the loss by far more than that (checked below, so the test can fail)."""
    img, txt = embeddings(8, 16, seed=6, dtype=torch.float32)
    loss_fn = VSELoss(max_violation=max_violation)
    ref = loss_fn(img, txt)
    ref_grads = torch.autograd.grad(ref, (img, txt))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(img, txt)
    grads = torch.autograd.grad(loss, (img, txt))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # inputs rounded to bfloat16, as an autocast matmul would take them
    low = loss_fn(img.detach().bfloat16().float(), txt.detach().bfloat16().float())
    assert (low - ref).abs().item() > 1e-4  # what bfloat16 arithmetic would have cost


def test_bad_shapes_are_clear_errors():
    img, txt = embeddings(4, 8, seed=0)
    with pytest.raises(ValueError, match="img dim 8 != txt dim 4"):
        VSELoss()(img, txt[:, :4])
    with pytest.raises(ValueError, match=r"2-D tensor \[B, D\]"):
        VSELoss()(img[0], txt)
    with pytest.raises(ValueError, match="reduction"):
        VSELoss(reduction="avg")


def loop_with_references(img, txt, ids, ref_img, ref_txt, ref_ids, margin, max_violation):
    """The batch's rows against batch + reference columns, straight from the formula."""
    all_img, all_txt = torch.cat([img, ref_img]), torch.cat([txt, ref_txt])
    all_ids = torch.cat([ids, ref_ids]).tolist()
    total = img.new_zeros(())
    for i in range(img.shape[0]):
        s_ii = img[i] @ txt[i]
        negatives = [j for j in range(len(all_ids)) if all_ids[j] != int(ids[i])]
        for costs in (
            [(margin - s_ii + img[i] @ all_txt[j]).clamp(min=0) for j in negatives],
            [(margin - s_ii + all_img[j] @ txt[i]).clamp(min=0) for j in negatives],
        ):
            if costs:
                total = total + (torch.stack(costs).max() if max_violation else sum(costs))
    return total


@pytest.mark.parametrize("max_violation", [True, False])
def test_references_equal_the_formula(max_violation):
    g = torch.Generator().manual_seed(3)

    def unit(n):
        return F.normalize(torch.randn(n, 5, generator=g, dtype=torch.float64), dim=1)

    img, txt, ref_img, ref_txt = (unit(n).requires_grad_() for n in (6, 6, 4, 4))
    ids, ref_ids = torch.tensor([0, 1, 1, 2, 3, 4]), torch.tensor([4, 5, 6, 0])  # shared ids
    ours = VSELoss(max_violation=max_violation)(img, txt, ids, ref_img, ref_txt, ref_ids)
    ref = loop_with_references(img, txt, ids, ref_img, ref_txt, ref_ids, 0.2, max_violation)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for a, b in zip(
        torch.autograd.grad(ours, (img, txt, ref_img, ref_txt)),
        torch.autograd.grad(ref, (img, txt, ref_img, ref_txt)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_references_must_come_together():
    x = F.normalize(torch.randn(3, 4), dim=1)
    with pytest.raises(ValueError, match="must be given together"):
        VSELoss()(x, x, None, ref_img=x)


def masked_formula(sim_i2t, sim_t2i, negatives, margin, max_violation):
    """The formula as plain autograd on full masks (the implementation before issue 22):
    per row ``[margin + S - S_diag]_+ * negatives``, then ``amax`` or ``sum``."""
    total = sim_i2t.new_zeros(())
    for sim in (sim_i2t, sim_t2i):
        cost = (margin + sim - sim.diagonal().unsqueeze(1)).clamp(min=0) * negatives
        total = total + (cost.amax(dim=1) if max_violation else cost.sum(dim=1)).sum()
    return total


def masked_reference(img, txt, ids, margin, max_violation):
    negatives = ids.reshape(-1, 1) != ids.reshape(1, -1)
    sim = img @ txt.T
    return masked_formula(sim, sim.T, negatives, margin, max_violation)


def assert_same_values_and_grads(ours, ref, inputs, atol=1e-12):
    """float64: values to summation-order rounding (sums of thousands of terms),
    gradients (counts and 0/1 weights times the embeddings) to ``atol``."""
    torch.testing.assert_close(ours, ref, rtol=1e-14, atol=atol)
    for a, b in zip(
        torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("n, num_ids", [(64, 64), (97, 30), (200, 7), (300, 100)])
@pytest.mark.parametrize("block_elements", [None, 50])
def test_equals_masked_formula_with_random_ids(
    max_violation, n, num_ids, block_elements, monkeypatch
):
    """Dense (small) and sparse (n = 300) same-id exclusion; one block of rows or
    many odd-sized ones (50 elements: the column maxima are merged across blocks)."""
    if block_elements is not None:
        monkeypatch.setattr(hinge, "HINGE_BLOCK_ELEMENTS", block_elements)
    img, txt = embeddings(n, 24, seed=n + num_ids)
    ids = torch.randint(0, num_ids, (n,), generator=torch.Generator().manual_seed(n))
    ours = VSELoss(0.2, max_violation)(img, txt, ids)
    ref = masked_reference(img, txt, ids, 0.2, max_violation)
    assert_same_values_and_grads(ours, ref, (img, txt))


def exact_similarities(sim):
    """``img = I`` and ``txt = sim^T`` give ``img @ txt.T == sim`` exactly (one-hot
    dot products), so ties and zero hinges can be placed by hand."""
    n = sim.shape[0]
    img = torch.eye(n, dtype=torch.float64).requires_grad_()
    return img, sim.T.clone().requires_grad_()


@pytest.mark.parametrize("max_violation", [True, False])
def test_ties_and_exactly_zero_hinges(max_violation):
    """Tied hardest negatives (split evenly, as amax does), hinges exactly 0 (torch's
    clamp passes no gradient at 0), rows without any violation, and a pair of
    captions of one image."""
    sim = torch.tensor(
        [
            [1.0, 0.75, 0.75, 0.25, 0.0],  # two tied hardest negatives (h = 0.25)
            [0.5, 1.0, 0.5, 0.25, 0.5],  # max hinge exactly 0, three times (no gradient)
            [0.0, 0.125, 1.0, 0.0, 0.0],  # no violation
            [0.75, 0.75, 0.75, 1.0, 0.75],  # everything ties (collapse-like row)
            [0.875, 0.5, 0.25, 0.875, 1.0],  # shares its id with row 3
        ],
        dtype=torch.float64,
    )
    ids = torch.tensor([0, 1, 2, 3, 3])
    img, txt = exact_similarities(sim)
    ours = VSELoss(0.5, max_violation)(img, txt, ids)
    ref = masked_reference(img, txt, ids, 0.5, max_violation)
    assert_same_values_and_grads(ours, ref, (img, txt))


@pytest.mark.parametrize("n", [2, 5, 40])
def test_collapse_gradient_splits_over_all_negatives(n):
    img = F.normalize(torch.ones(n, 4, dtype=torch.float64), dim=1).requires_grad_()
    txt = img.detach().clone().requires_grad_()
    ours = VSELoss(0.2, True)(img, txt)
    ref = loop_formula(img, txt, torch.arange(n), 0.2, True) if n <= 5 else None
    ref = masked_reference(img, txt, torch.arange(n), 0.2, True) if ref is None else ref
    assert_same_values_and_grads(ours, ref, (img, txt))


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_computed_in_fp32(max_violation, dtype):
    img, txt = embeddings(48, 32, seed=7, dtype=torch.float32)
    low_img, low_txt = (t.detach().to(dtype).requires_grad_() for t in (img, txt))
    ref_img, ref_txt = (t.detach().to(dtype).float().requires_grad_() for t in (img, txt))
    ids = torch.arange(48) // 2
    low = VSELoss(0.2, max_violation)(low_img, low_txt, ids)
    ref = VSELoss(0.2, max_violation)(ref_img, ref_txt, ids)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref)  # same fp32 computation on the same values
    low.backward()
    ref.backward()
    assert low_img.grad.dtype == dtype
    torch.testing.assert_close(low_img.grad, ref_img.grad.to(dtype))
    torch.testing.assert_close(low_txt.grad, ref_txt.grad.to(dtype))


@pytest.mark.parametrize("max_violation", [True, False])
def test_upstream_gradient_scales(max_violation):
    img, txt = embeddings(9, 8, seed=11)
    ids = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 6])
    loss = VSELoss(0.2, max_violation, reduction="mean")
    ours = loss(img, txt, ids) * 3.0
    ref = masked_reference(img, txt, ids, 0.2, max_violation) / 9 * 3.0
    assert_same_values_and_grads(ours, ref, (img, txt))


# Two implementations: B <= 256 without references takes hinge_small (few
# operations); larger batches and references take hinge.VSEHinge (blocked).
# The tests below run both paths at the same sizes, and check them against
# each other and against the references above.


@pytest.fixture(params=["small", "blocked"])
def path(request, monkeypatch):
    """Which implementation ``VSELoss`` uses, at any B."""
    if request.param == "blocked":
        monkeypatch.setattr(vse_module, "use_small_path", lambda num: False)
    return request.param


def test_small_batches_without_references_take_the_small_path(monkeypatch):
    calls = []
    real = vse_module.SmallVSEHinge

    class Spy(torch.autograd.Function):
        @staticmethod
        def apply(*args):
            calls.append(args[0].shape[0])
            return real.apply(*args)

    monkeypatch.setattr(vse_module, "SmallVSEHinge", Spy)
    assert hinge_small.use_small_path(256) and not hinge_small.use_small_path(257)
    img, txt = embeddings(256, 4, seed=0)
    VSELoss()(img, txt)
    ref = (F.normalize(torch.randn(2, 4, dtype=torch.float64), dim=1),) * 2
    VSELoss()(img[:8], txt[:8], torch.arange(8), *ref, torch.tensor([20, 21]))
    VSELoss()(*embeddings(257, 4, seed=0))
    assert calls == [256]


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("n, num_ids", [(64, 64), (97, 30), (200, 7), (256, 256)])
@pytest.mark.parametrize("block_elements", [None, 50])
def test_both_paths_equal_masked_formula_with_random_ids(
    max_violation, n, num_ids, block_elements, path, monkeypatch
):
    """``test_equals_masked_formula_with_random_ids`` on each path at small B (the
    blocked one with one block or many odd-sized ones)."""
    test_equals_masked_formula_with_random_ids(
        max_violation, n, num_ids, block_elements, monkeypatch
    )


@pytest.mark.parametrize("max_violation", [True, False])
def test_both_paths_ties_zero_hinges_and_collapse(max_violation, path):
    """The hand-placed ties and zero hinges, and the all-tied collapse, on each path."""
    test_ties_and_exactly_zero_hinges(max_violation)
    for n in (2, 5, 40):
        test_collapse_gradient_splits_over_all_negatives(n)


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_small_path_equals_blocked_path_bit_for_bit(max_violation, dtype, scale, monkeypatch):
    """Same float operations: equal gradients (and MH values) bit for bit, ties and
    repeated ids included; the SH value is summed as vsepp sums it (test below), so
    it may differ from the blocked path's in the last bits."""
    g = torch.Generator().manual_seed(4)
    for n, dim in ((2, 8), (33, 8), (128, 32), (256, 32)):
        # 3-bit coordinates: exact dot products, so ties occur
        img = torch.randint(-2, 3, (n, dim), generator=g).to(dtype) / 4
        txt = torch.randint(-2, 3, (n, dim), generator=g).to(dtype) / 4
        ids = torch.randint(0, max(1, n // 3), (n,), generator=g)
        results = []
        for small in (True, False):
            monkeypatch.setattr(vse_module, "use_small_path", lambda num, small=small: small)
            leaves = [t.clone().requires_grad_() for t in (img, txt)]
            loss = VSELoss(0.2, max_violation)(*leaves, ids)
            (loss * scale).backward()
            results.append((loss.detach(), *(t.grad for t in leaves)))
        (value, *grads), (blocked_value, *blocked_grads) = results
        for a, b in zip(grads, blocked_grads, strict=True):
            assert torch.equal(a, b)
        if max_violation:
            assert torch.equal(value, blocked_value)
        else:
            # summation order only (up to 2 x 65536 terms; float32: 1e-5 relative)
            torch.testing.assert_close(value, blocked_value, rtol=1e-5, atol=0)


@pytest.mark.parametrize("max_violation", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [2, 33, 128, 256])
def test_small_path_value_equals_vsepp_bit_for_bit(max_violation, dtype, n):
    """Distinct ids: vsepp's value exactly (its costs, summed per direction in the
    same order), and for SH its gradient exactly (0/1 weights and integer counts)."""
    img, txt = embeddings(n, 32, seed=n, dtype=dtype)
    ours = VSELoss(0.2, max_violation)(img, txt)
    ref = vsepp_contrastive(img, txt, 0.2, max_violation)
    assert torch.equal(ours, ref)
    if not max_violation:
        for a, b in zip(
            torch.autograd.grad(ours, (img, txt)),
            torch.autograd.grad(ref, (img, txt)),
            strict=True,
        ):
            assert torch.equal(a, b)
