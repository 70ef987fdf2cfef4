"""mFSR building blocks: separation heads, gradient scaling, DCGAN generator and
discriminators at each size, translation and pixel range, the caption decoder."""

from __future__ import annotations

import pytest
import torch

from retrievalkit.models import (
    CaptionDecoder,
    FeatureSeparation,
    ImageDiscriminator,
    ImageGenerator,
    PairDiscriminator,
)
from retrievalkit.models.caption_decoder import END_ID, teacher_forcing
from retrievalkit.models.gan import random_translate, to_pixel_range
from retrievalkit.models.separation import scale_gradient


@pytest.mark.parametrize("head", ["linear", "mlp", {"kind": "mlp", "hidden_dim": 32}])
def test_separation_gives_three_unit_parts(head):
    torch.manual_seed(0)
    separation = FeatureSeparation(10, 4, head)
    parts = separation(torch.randn(5, 10))
    for part in (parts.mo, parts.se, parts.sp):
        assert part.shape == (5, 4)
        torch.testing.assert_close(part.norm(dim=1), torch.ones(5))
    assert not torch.allclose(parts.mo, parts.se) and not torch.allclose(parts.se, parts.sp)
    code = parts.code()
    assert code.shape == (5, 12) and torch.equal(code[:, 4:8], parts.se)
    with pytest.raises(ValueError, match=r"features \[B, 10\]"):
        separation(torch.randn(5, 9))


@pytest.mark.parametrize("scale", [0.0, 0.25, 1.0])
def test_scale_gradient(scale):
    x = torch.randn(3, 4, requires_grad=True)
    y = scale_gradient(x, scale)
    assert torch.equal(y, x)
    if scale == 0.0:  # cut: no gradient path at all
        assert not y.requires_grad
        return
    (y * torch.arange(12.0).view(3, 4)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(12.0).view(3, 4) * scale)


def test_code_gradient_scale_reaches_the_parts():
    torch.manual_seed(0)
    separation = FeatureSeparation(6, 3)
    features = torch.randn(4, 6, requires_grad=True)
    full = torch.autograd.grad(separation(features).code().sum(), features)[0]
    half = torch.autograd.grad(separation(features).code(grad_scale=0.5).sum(), features)[0]
    torch.testing.assert_close(half, full * 0.5)


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_generator_and_discriminators_at_each_size(size):
    torch.manual_seed(0)
    generator = ImageGenerator(12, size, channels=3, base_channels=4)
    fake = generator(torch.randn(2, 12))
    assert fake.shape == (2, 3, size, size)
    assert fake.abs().max() <= 1.0  # tanh
    assert ImageDiscriminator(size, 3, base_channels=4)(fake).shape == (2,)
    assert PairDiscriminator(size, 3, base_channels=4)(fake, fake).shape == (2,)


def test_dcgan_layout_at_64():
    """PyTorch's examples/dcgan widths: 4x4 ngf*8, 8x8 ngf*4, 16x16 ngf*2, 32x32 ngf."""
    generator = ImageGenerator(100, 64, 3, base_channels=64)
    convs = [m for m in generator.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [512, 256, 128, 64, 3]
    discriminator = ImageDiscriminator(64, 3, base_channels=64)
    convs = [m for m in discriminator.net if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 1]


@pytest.mark.parametrize("size", [8, 48, 100])
def test_sizes_that_are_not_powers_of_two_from_16_fail(size):
    with pytest.raises(ValueError, match="power of two >= 16"):
        ImageGenerator(4, size)
    with pytest.raises(ValueError, match="power of two >= 16"):
        ImageDiscriminator(size)


def test_wrong_inputs_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"code \[B, 12\]"):
        ImageGenerator(12, 16, base_channels=4)(torch.randn(2, 11))
    with pytest.raises(ValueError, match=r"images \[B, 3, 16, 16\]"):
        ImageDiscriminator(16, 3, base_channels=4)(torch.randn(2, 3, 32, 32))


def test_random_translate_is_a_clamped_shift():
    images = torch.randn(4, 2, 6, 7)
    out = random_translate(images, 2, torch.Generator().manual_seed(3))
    dy, dx = torch.randint(-2, 3, (2, 4), generator=torch.Generator().manual_seed(3))
    for b in range(4):
        for i in range(6):
            for j in range(7):
                source = images[b, :, min(max(i - dy[b], 0), 5), min(max(j - dx[b], 0), 6)]
                assert torch.equal(out[b, :, i, j], source)
    assert torch.equal(random_translate(images, 0), images)


def test_to_pixel_range_undoes_the_normalization():
    pixels = torch.rand(2, 3, 4, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalized = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(to_pixel_range(normalized, mean, std), pixels * 2 - 1)
    with pytest.raises(ValueError, match="1 means"):
        to_pixel_range(normalized, (0.5,), (0.5,))


def test_teacher_forcing_and_decoder_shapes(vocab, captions):
    ids, _ = vocab.encode_batch(captions)
    inputs, targets = teacher_forcing(ids)
    assert torch.equal(inputs[:, 1:], targets[:, :-1]) and inputs[0, 0] == vocab.start_id
    torch.manual_seed(0)
    decoder = CaptionDecoder(9, len(vocab), word_dim=5, hidden_dim=7, num_layers=2)
    logits = decoder(torch.randn(3, 9), inputs)
    assert logits.shape == (3, ids.shape[1] - 1, len(vocab))
    # a later word never changes an earlier position's logits (causal)
    changed = inputs.clone()
    changed[:, -1] = 5
    code = torch.randn(3, 9)
    torch.testing.assert_close(decoder(code, changed)[:, :-1], decoder(code, inputs)[:, :-1])


def test_greedy_decoding_stops_at_end_and_reads_back_through_the_vocabulary(vocab):
    torch.manual_seed(0)
    decoder = CaptionDecoder(4, len(vocab), word_dim=5, hidden_dim=6)
    with torch.no_grad():  # make "<end>" the only likely word: decoding stops at once
        decoder.out.weight.zero_()
        decoder.out.bias.fill_(-10.0)
        decoder.out.bias[END_ID] = 10.0
    ids = decoder.greedy(torch.randn(2, 4), max_len=8)
    assert ids.tolist() == [[END_ID], [END_ID]]
    assert decoder.decode_strings(torch.randn(2, 4), vocab) == ["", ""]
    with torch.no_grad():  # now always "dogs": runs to max_len
        decoder.out.bias.fill_(-10.0)
        decoder.out.bias[vocab.index["dogs"]] = 10.0
    assert decoder.decode_strings(torch.randn(1, 4), vocab, max_len=3) == ["dogs dogs dogs"]
