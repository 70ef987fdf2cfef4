"""mFSR losses against loops written from their stated formulas (float64, values and
gradients), with the edge cases: a batch of one, every row of one image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import (
    CaptionReconstructionLoss,
    ImageReconstructionLoss,
    ModalityLoss,
    SpecificLoss,
    build_loss,
)
from retrievalkit.losses.adversarial import is_adversarial
from retrievalkit.losses.mfsr import d1_loss, d2_loss, mismatched_pairs
from retrievalkit.models.gan import ImageDiscriminator, PairDiscriminator, random_translate

TOL = {"rtol": 1e-9, "atol": 1e-10}


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).requires_grad_()


def assert_same_value_and_grads(ours, ref, inputs):
    torch.testing.assert_close(ours, ref, **TOL)
    for a, b in zip(
        torch.autograd.grad(ours, inputs, retain_graph=True),
        torch.autograd.grad(ref, inputs, retain_graph=True),
        strict=True,
    ):
        torch.testing.assert_close(a, b, **TOL)


# ---------------------------------------------------------------- modality


def modality_by_hand(v, t, margin):
    """(1/B) sum_i |v_i - mean v|^2 + (1/B) sum_i |t_i - mean t|^2 + max(0, m - |mean v - mean t|^2)."""
    n = len(v)
    v_bar = sum(v[i] for i in range(n)) / n
    t_bar = sum(t[i] for i in range(n)) / n
    compact = sum(((v[i] - v_bar) ** 2).sum() for i in range(n)) / n
    compact = compact + sum(((t[i] - t_bar) ** 2).sum() for i in range(n)) / n
    gap = ((v_bar - t_bar) ** 2).sum()
    return compact + torch.clamp(margin - gap, min=0)


@pytest.mark.parametrize("n", [1, 2, 9])
@pytest.mark.parametrize("margin", [0.5, 1.0, 3.0])
def test_modality_loss_is_the_formula(n, margin):
    v, t = unit(n, 7, n), unit(n, 7, 100 + n)
    ours = build_loss("mfsr_modality", margin=margin)(v, t)
    assert_same_value_and_grads(ours, modality_by_hand(v, t, margin), (v, t))


def test_modality_loss_known_values():
    e = torch.eye(4, dtype=torch.float64)
    v, t = e[[0, 0, 0]], e[[1, 1, 1]]  # tight clusters 90 degrees apart: gap 2
    assert float(ModalityLoss(margin=1.0)(v, t)) == 0.0
    assert float(ModalityLoss(margin=3.0)(v, t)) == pytest.approx(1.0)
    # spread parts cost their variance: two opposite unit vectors, mean 0, each at distance 1
    v2 = torch.stack([e[0], -e[0]])
    assert float(ModalityLoss(margin=0.0)(v2, t[:2])) == pytest.approx(1.0)


# ---------------------------------------------------------------- specific


def specific_by_hand(v_se, v_sp, l_se, l_sp, penalty):
    def f(c):
        return c**2 if penalty == "square" else c

    n = len(v_se)
    image = sum(f(v_se[i] @ v_sp[i]) for i in range(n)) / n
    text = sum(f(l_se[i] @ l_sp[i]) for i in range(n)) / n
    return image + text


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("penalty", ["square", "linear"])
def test_specific_loss_is_the_formula(n, penalty):
    parts = [unit(n, 6, seed) for seed in range(4)]
    ours = SpecificLoss(penalty)(*parts)
    assert_same_value_and_grads(ours, specific_by_hand(*parts, penalty), tuple(parts))


def test_specific_loss_is_zero_for_orthogonal_parts():
    e = torch.eye(3, dtype=torch.float64)
    assert float(SpecificLoss()(e[[0, 1]], e[[2, 2]], e[[1, 0]], e[[2, 2]])) == 0.0
    with pytest.raises(ValueError, match="penalty"):
        SpecificLoss("abs")


# ---------------------------------------------------------------- caption


def caption_by_hand(logits, targets, pad):
    terms = []
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            if targets[b, t] != pad:
                log_p = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
                terms.append(-log_p[targets[b, t]])
    return torch.stack(terms).mean()


def test_caption_loss_is_the_formula_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64).requires_grad_()
    targets = torch.tensor([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 10, 2]])
    ours = CaptionReconstructionLoss()(logits, targets)
    assert_same_value_and_grads(ours, caption_by_hand(logits, targets, 0), (logits,))
    (grad,) = torch.autograd.grad(ours, logits)
    assert grad[0, 3:].abs().sum() == 0 and grad[1, 2:].abs().sum() == 0  # padding positions


def test_caption_loss_of_only_padding_is_a_zero_in_the_graph():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    value = CaptionReconstructionLoss()(logits, torch.zeros(2, 3, dtype=torch.long))
    value.backward()
    assert float(value.detach()) == 0.0 and logits.grad is not None and logits.grad.abs().sum() == 0


# ---------------------------------------------------------------- GAN


SIZE = 16


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()


def discriminators():
    """Float64 discriminators in eval mode: BN uses running statistics, so scoring a
    row alone (the loops) and in a batch (the losses) give the same logit."""
    torch.manual_seed(0)
    d1 = ImageDiscriminator(SIZE, 3, base_channels=4).double().eval()
    d2 = PairDiscriminator(SIZE, 3, base_channels=4).double().eval()
    return d1, d2


def bce(logit, label):
    p = torch.sigmoid(logit)
    return -(label * torch.log(p) + (1 - label) * torch.log(1 - p))


def d1_by_hand(d1, real, fake):
    n = len(real)
    real_term = sum(bce(d1(real[i : i + 1])[0], 1.0) for i in range(n)) / n
    return real_term + sum(bce(d1(fake[i : i + 1])[0], 0.0) for i in range(n)) / n


def d2_by_hand(d2, real, fake, ids):
    """GAN-CLS on pairs, no translation (max_shift 0): positive (x_i, x_i); negatives
    (x_i, G_i) and (x_i, x_{i+1}) when the ids differ; the two negative kinds averaged."""
    n = len(real)

    def score(a, b):
        return d2(a.unsqueeze(0), b.unsqueeze(0))[0]

    positive = sum(bce(score(real[i], real[i]), 1.0) for i in range(n)) / n
    generated = sum(bce(score(real[i], fake[i]), 0.0) for i in range(n)) / n
    pairs = [(i, (i + 1) % n) for i in range(n) if ids[i] != ids[(i + 1) % n]]
    if not pairs:
        return positive + generated
    mismatched = sum(bce(score(real[i], real[j]), 0.0) for i, j in pairs) / len(pairs)
    return positive + (generated + mismatched) / 2


@pytest.mark.parametrize(
    "ids", [[0, 1, 2, 3], [0, 0, 1, 2], [5, 5, 5, 5], [7]], ids=["distinct", "dup", "same", "one"]
)
def test_discriminator_losses_are_the_formulas(ids):
    d1, d2 = discriminators()
    ids = torch.tensor(ids)
    real, fake = images(len(ids), 1), images(len(ids), 2)
    params = tuple(d1.parameters()) + tuple(d2.parameters())
    ours = d1_loss(d1, real, fake) + d2_loss(d2, real, fake, ids, max_shift=0)
    ref = d1_by_hand(d1, real, fake) + d2_by_hand(d2, real, fake, ids)
    assert_same_value_and_grads(ours, ref, params)
    # the generated images are detached: the discriminators' loss never trains G
    assert torch.autograd.grad(ours, fake, allow_unused=True)[0] is None


def test_mismatched_pairs():
    rows, partners = mismatched_pairs(torch.tensor([0, 0, 1, 2]))
    assert rows.tolist() == [1, 2, 3] and partners.tolist() == [2, 3, 0]
    assert mismatched_pairs(torch.tensor([3, 3])).__getitem__(0).numel() == 0


def test_d2_positive_is_a_translated_copy():
    _, d2 = discriminators()
    real, fake, ids = images(3, 1), images(3, 2), torch.arange(3)

    def positive_term(candidates):
        return sum(bce(d2(real[i : i + 1], candidates[i : i + 1])[0], 1.0) for i in range(3)) / 3

    shifted = random_translate(real, 2, torch.Generator().manual_seed(9))
    assert not torch.equal(shifted, real)
    ours = d2_loss(d2, real, fake, ids, max_shift=2, generator=torch.Generator().manual_seed(9))
    # the unshifted formula with its positive term swapped for the shifted one
    ref = d2_by_hand(d2, real, fake, ids) - positive_term(real) + positive_term(shifted)
    torch.testing.assert_close(ours, ref, **TOL)


def generator_by_hand(loss, fake, real, w1, w2, wp):
    n = len(fake)
    adv1 = sum(bce(loss.d1(fake[i : i + 1])[0], 1.0) for i in range(n)) / n
    adv2 = sum(bce(loss.d2(real[i : i + 1], fake[i : i + 1])[0], 1.0) for i in range(n)) / n
    return w1 * adv1 + w2 * adv2 + wp * (fake - real).abs().mean()


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 0.0), (0.5, 2.0, 10.0)])
def test_generator_loss_is_the_formula(n, weights):
    torch.manual_seed(0)
    w1, w2, wp = weights
    loss = ImageReconstructionLoss(SIZE, 3, 4, d1_weight=w1, d2_weight=w2, pixel_weight=wp)
    loss = loss.double().eval()
    fake, real = images(n, 3), images(n, 4)
    ours = loss(fake, real)
    assert_same_value_and_grads(ours, generator_by_hand(loss, fake, real, w1, w2, wp), (fake,))
    assert torch.autograd.grad(ours, real, allow_unused=True)[0] is None  # the target is data


def test_image_loss_is_an_adversarial_term_whose_parts_can_be_switched_off():
    full = ImageReconstructionLoss(SIZE, 3, 4)
    assert is_adversarial(full)
    assert {id(p) for p in full.adversary_parameters()} == {id(p) for p in full.parameters()}
    no_d2 = ImageReconstructionLoss(SIZE, 3, 4, d2_weight=0.0, pixel_weight=1.0)
    assert no_d2.d2 is None and sum(p.numel() for p in no_d2.parameters()) == sum(
        p.numel() for p in full.d1.parameters()
    )
    pixel_only = ImageReconstructionLoss(SIZE, 3, 4, d1_weight=0, d2_weight=0, pixel_weight=1)
    assert not list(pixel_only.parameters())
    fake, real = images(2, 5), images(2, 6)
    torch.testing.assert_close(pixel_only(fake, real), (fake - real).abs().mean(), **TOL)
    with pytest.raises(ValueError, match="trains nothing"):
        ImageReconstructionLoss(SIZE, 3, 4, d1_weight=0, d2_weight=0)


def test_inputs_name_model_outputs():
    assert ModalityLoss.default_inputs == {"img_mo": "image.mo", "txt_mo": "text.mo"}
    specific = set(SpecificLoss.default_inputs.values())
    assert specific == {"image.se", "image.sp", "text.se", "text.sp"}
    assert CaptionReconstructionLoss.default_inputs["logits"] == "decoder.logits"
    assert ImageReconstructionLoss.default_inputs == {
        "fake": "recon.image",
        "real": "recon.target",
        "ids": "ids",
    }


def test_adversary_loss_is_d1_plus_d2_and_records_health():
    torch.manual_seed(0)
    loss = ImageReconstructionLoss(SIZE, 3, 4).double().eval()
    real, fake, ids = images(4, 7), images(4, 8), torch.tensor([0, 0, 1, 2])
    torch.manual_seed(3)
    ours = loss.adversary_loss((fake, real), ids)
    torch.manual_seed(3)
    ref = d1_loss(loss.d1, real, fake) + d2_loss(loss.d2, real, fake, ids, loss.max_shift)
    torch.testing.assert_close(ours, ref, **TOL)
    assert loss.health is not None and 0 <= loss.health.d1_real_accuracy <= 1


class MeanLogit(torch.nn.Module):
    """A stand-in D1 whose logit is 10 x the image's mean pixel."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)) * 10


def test_health_flags_a_pinned_d1_and_constant_generated_images():
    loss = ImageReconstructionLoss(SIZE, 3, 4, d2_weight=0)
    loss.d1 = MeanLogit()
    real = torch.rand(4, 3, SIZE, SIZE) * 0.5 + 0.25  # bright: logit > 0
    varied_dark = -real  # logit < 0: D1 is right on every image
    loss.adversary_loss((varied_dark, real), torch.arange(4))
    reasons = loss.health.collapse_reasons()
    assert len(reasons) == 1 and "D1 accuracy pinned at 100%" in reasons[0]
    constant = torch.full_like(real, -0.5)
    loss.adversary_loss((constant, real), torch.arange(4))
    assert any("nearly constant" in r for r in loss.health.collapse_reasons())
    mixed = torch.cat([-real[:2], real[2:]])  # D1 fooled on half: healthy
    loss.adversary_loss((mixed, real), torch.arange(4))
    assert loss.health.collapse_reasons() == []
    assert loss.health.as_dict()["d1_fake_acc"] == 0.5
