"""DualEncoder / EmbeddingModel, heads, the dict factories and import hygiene."""

import math
import subprocess
import sys

import pytest
import torch

from retrievalkit.models import (
    DualEmbeddings,
    ProjectionHead,
    build_dual_encoder,
    build_embedding_model,
    build_image_encoder,
    build_text_encoder,
)

SMALL_CNN = {"name": "small_cnn", "widths": [4], "out_dim": 8}


def _images(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def test_dual_encoder_outputs_are_unit_norm(vocab, captions):
    model = build_dual_encoder(
        SMALL_CNN, {"name": "gru", "word_dim": 4, "hidden_dim": 6}, embed_dim=5, vocab=vocab
    )
    out = model(_images(3, 3, 16, 16), captions)
    assert isinstance(out, DualEmbeddings) and model.embed_dim == 5
    assert out.image.shape == out.text.shape == (3, 5)
    assert torch.allclose(out.image.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(out.text.norm(dim=1), torch.ones(3), atol=1e-6)
    raw = model.encode_text(captions, normalize=False)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3))
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), out.text, atol=1e-6)


def test_embedding_model_is_unit_norm_and_takes_head_options():
    model = build_embedding_model(
        {**SMALL_CNN, "in_channels": 1, "head": {"kind": "mlp", "hidden_dim": 7}}, 6
    )
    assert model.head.kind == "mlp" and model.head.net[0].out_features == 7
    out = model.encode(_images(2, 1, 16, 16))
    assert out.shape == (2, 6)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.equal(model(_images(2, 1, 16, 16))["embedding"], out)


def test_linear_head_uses_vsepp_xavier_init():
    head = ProjectionHead(300, 100)
    bound = math.sqrt(6.0) / math.sqrt(300 + 100)
    weight = head.net.weight
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert torch.equal(head.net.bias, torch.zeros(100))


def test_identity_head_keeps_the_encoder_space():
    head = ProjectionHead(6, 6, kind="identity")
    x = _images(3, 6)
    assert torch.equal(head(x), x)
    with pytest.raises(ValueError, match="identity head needs in_dim == out_dim"):
        ProjectionHead(6, 5, kind="identity")
    with pytest.raises(ValueError, match="unknown head kind 'deep'"):
        ProjectionHead(6, 5, kind="deep")


def test_residual_head_starts_at_the_identity_and_learns_a_correction():
    head = ProjectionHead(6, 6, kind="residual", hidden_dim=8)
    head.eval()  # batch norm on running statistics: the input passes unchanged
    x = _images(3, 6)
    assert torch.equal(head(x), x)
    head.train()
    loss = (head(_images(5, 6)) - 1.0).pow(2).sum()
    loss.backward()
    assert head.net[-1].weight.grad.abs().sum() > 0  # the zero layer receives a gradient
    with pytest.raises(ValueError, match="residual head needs in_dim == out_dim"):
        ProjectionHead(6, 5, kind="residual")


def test_precomp_is_the_identity_by_default_and_checks_the_width():
    encoder = build_image_encoder("precomp", in_dim=10)
    x = _images(4, 10)
    assert encoder.out_dim == 10 and torch.equal(encoder(x), x)
    with pytest.raises(ValueError, match=r"expects features \[B, 10\]"):
        encoder(_images(4, 12))


def test_unknown_options_name_the_encoder_and_the_option(vocab):
    with pytest.raises(TypeError, match=r"image encoder 'small_cnn': unknown option 'depth'"):
        build_image_encoder("small_cnn", depth=3)
    with pytest.raises(TypeError, match=r"text encoder 'gru': unknown option 'hidden'.*hidden_dim"):
        build_dual_encoder(SMALL_CNN, {"name": "gru", "hidden": 3}, embed_dim=4, vocab=vocab)
    with pytest.raises(KeyError, match="unknown text encoder 'bert'"):
        build_text_encoder("bert")
    with pytest.raises(ValueError, match="'gru' needs a vocabulary"):
        build_text_encoder("gru")
    with pytest.raises(ValueError, match="need a 'name'"):
        build_embedding_model({"widths": [4]}, 4)
    with pytest.raises(ValueError, match=r"head options \['size'\] unknown"):
        build_embedding_model({**SMALL_CNN, "head": {"kind": "mlp", "size": 3}}, 4)


def test_importing_models_needs_only_torch():
    code = (
        "import sys, retrievalkit.models as m; m.IMAGE_ENCODERS.names(); "
        "heavy = {'torchvision', 'sentence_transformers', 'transformers'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_small_cnn_stem_stride_keeps_the_first_stage_at_full_resolution():
    coarse = build_image_encoder("small_cnn", in_channels=1, widths=[4, 4], out_dim=3)
    fine = build_image_encoder("small_cnn", in_channels=1, widths=[4, 4], out_dim=3, stem_stride=1)
    x = _images(2, 1, 28, 28)
    assert coarse.features(x).shape[-2:] == (7, 7)
    assert fine.features(x).shape[-2:] == (14, 14)
    assert fine(x).shape == (2, 3)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        build_image_encoder("small_cnn", stem_stride=3)


def test_small_cnn_three_conv_form_is_conv_bn_relu_maxpool_then_average():
    """``blocks_per_stage=1, downsample="maxpool", pool="avg"`` is the plain 3-conv net
    (conv-BN-ReLU, 2x2 max pool between stages, global average, linear)."""
    torch.manual_seed(0)
    net = build_image_encoder(
        "small_cnn",
        in_channels=1,
        widths=[4, 6, 8],
        out_dim=3,
        stem_stride=1,
        blocks_per_stage=1,
        downsample="maxpool",
        pool="avg",
    ).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 3 and all(c.stride == (1, 1) for c in convs)
    x = _images(2, 1, 28, 28)
    h = x
    for index, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
        if index:
            h = torch.nn.functional.max_pool2d(h, 2)
        h = torch.relu(bn(conv(h)))
    assert h.shape[-2:] == (7, 7)
    assert torch.allclose(net(x), net.fc(h.mean(dim=(2, 3))), atol=1e-6)
    with pytest.raises(ValueError, match="downsample must be"):
        build_image_encoder("small_cnn", downsample="avgpool")
