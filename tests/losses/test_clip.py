"""ClipLoss (InfoNCE) against a loop written from the formula, open_clip's ClipLoss,
references, cross-batch memory and the temperature clamp."""

import math

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import ClipLoss, CrossModalMemory, build_loss


def loop_formula(img, txt, ids, scale, ref_img=None, ref_txt=None, ref_ids=None):
    """Per matched pair i: -log of its softmax share among itself and the columns of
    other images, in both directions; the mean over i, the two directions averaged."""
    cols_img = img if ref_img is None else torch.cat([img, ref_img])
    cols_txt = txt if ref_txt is None else torch.cat([txt, ref_txt])
    cols_ids = list(ids) if ref_ids is None else list(ids) + list(ref_ids)
    n = img.shape[0]
    directions = []
    for queries, columns in ((img, cols_txt), (txt, cols_img)):
        terms = []
        for i in range(n):
            logits = [scale * (queries[i] @ columns[i])]
            logits += [
                scale * (queries[i] @ columns[j])
                for j in range(len(cols_ids))
                if cols_ids[j] != ids[i]
            ]
            stacked = torch.stack(logits)
            terms.append(torch.logsumexp(stacked, 0) - stacked[0])
        directions.append(torch.stack(terms).mean())
    return (directions[0] + directions[1]) / 2


def open_clip_loss(img, txt, scale):
    """open_clip's ClipLoss on one process: symmetric cross-entropy, targets = arange."""
    logits = scale * img @ txt.T
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def unit(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def pair(n, d, seed):
    img = unit(n, d, seed)
    txt = F.normalize(img + unit(n, d, seed + 1), dim=1)
    return img.requires_grad_(), txt.requires_grad_()


@pytest.mark.parametrize("n", [1, 2, 7, 33])
def test_equals_open_clip_when_ids_distinct(n):
    img, txt = pair(n, 16, n)
    loss = ClipLoss(temperature=0.07).double()
    ours = loss(img, txt)
    ref = open_clip_loss(img, txt, loss.log_scale.detach().exp())
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    g_ours = torch.autograd.grad(ours, (img, txt))
    g_ref = torch.autograd.grad(ref, (img, txt))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_image_ids_against_the_loop_values_and_gradients(seed):
    img, txt = pair(9, 8, seed)
    ids = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5])  # captions of one image: not negatives
    loss = ClipLoss(temperature=0.1).double()
    ours = loss(img, txt, ids)
    scale = loss.log_scale.exp()
    ref = loop_formula(img, txt, ids.tolist(), scale)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    with torch.no_grad():  # the forward without the gradient pass gives the same value
        torch.testing.assert_close(loss(img, txt, ids), ours.detach(), rtol=0, atol=1e-12)
    wrt = (img, txt, loss.log_scale)
    g_ours = torch.autograd.grad(ours, wrt, retain_graph=True)
    g_ref = torch.autograd.grad(ref, wrt)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # sibling captions really are left out: with them as negatives the value differs
    assert not torch.allclose(ours, open_clip_loss(img, txt, scale), atol=1e-6)


def test_references_against_the_loop():
    img, txt = pair(5, 8, 3)
    ref_img, ref_txt = unit(4, 8, 10), unit(4, 8, 11)
    ids, ref_ids = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([7, 1, 8, 4])
    loss = ClipLoss().double()
    ours = loss(img, txt, ids, ref_img, ref_txt, ref_ids)
    ref = loop_formula(img, txt, ids.tolist(), loss.log_scale.exp(), ref_img, ref_txt, ref_ids)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for a, b in zip(
        torch.autograd.grad(ours, (img, txt)), torch.autograd.grad(ref, (img, txt)), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="given together"):
        loss(img, txt, ids, ref_img)


def test_memory_equals_explicit_references():
    clip = ClipLoss().double()
    memory = CrossModalMemory(clip, embedding_dim=4, memory_size=4).double()
    img1, txt1 = pair(3, 4, 20)
    img2, txt2 = pair(3, 4, 30)
    ids1, ids2 = torch.tensor([0, 1, 2]), torch.tensor([2, 3, 4])  # image 2 comes back
    memory(img1, txt1, ids1)
    value = memory(img2, txt2, ids2)
    expected = clip(img2, txt2, ids2, img1[-4:].detach(), txt1[-4:].detach(), ids1)
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-12)


def test_temperature_is_learned_and_clamped_as_open_clip():
    loss = ClipLoss(temperature=0.07)
    assert math.isclose(float(loss.log_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    assert loss.log_scale.requires_grad and "log_scale" in dict(loss.named_parameters())
    img, txt = pair(6, 8, 4)
    img, txt = img.float(), txt.float()
    with torch.no_grad():
        loss.log_scale.fill_(7.0)  # an optimizer step overshot ln 100
    high = loss(img, txt)
    assert math.isclose(float(loss.log_scale.detach()), math.log(100), rel_tol=1e-6)
    torch.testing.assert_close(high, open_clip_loss(img, txt, 100.0).float())
    with torch.no_grad():
        loss.log_scale.fill_(-1.0)
    loss(img, txt)
    assert float(loss.log_scale.detach()) == 0.0 and loss.logit_scale == 1.0
    fixed = ClipLoss(temperature=0.5, learn_temperature=False)
    assert not list(fixed.parameters()) and math.isclose(fixed.logit_scale, 2.0, rel_tol=1e-6)


def test_registered_under_both_names_and_float16_input():
    assert isinstance(build_loss("clip"), ClipLoss)
    assert isinstance(build_loss("infonce", temperature=0.05), ClipLoss)
    img, txt = pair(5, 8, 6)
    value = ClipLoss()(img.half(), txt.half())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    far = ClipLoss()  # scale 100, positive at -1, negative at +1: large but finite
    far.log_scale.data.fill_(math.log(100))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.isfinite(far(x, torch.stack([-x[0], x[0]])))
    with pytest.raises(ValueError, match="temperature"):
        ClipLoss(temperature=0.0)
