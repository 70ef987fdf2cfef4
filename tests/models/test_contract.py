"""Contract tests generated from the registries: every encoder builds with small
sizes, gives ``[B, out_dim]`` finite features, and sends a gradient to every
trainable parameter."""

import pytest
import torch

from retrievalkit.models import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    build_image_encoder,
    build_text_encoder,
)

SMALL_IMAGE = {
    "precomp": ({"in_dim": 12, "hidden": [16]}, (3, 12)),
    "small_cnn": ({"widths": [4, 8], "out_dim": 8}, (3, 3, 32, 32)),
    "resnet18": ({}, (2, 3, 32, 32)),
    # pretrained towers: the last stage trainable (frozen ones have no gradient to check)
    **{
        f"efficientnet_lite{i}": ({"image_size": 64, "trainable_stages": 1}, (2, 3, 64, 64))
        for i in range(3)
    },
}
BUILD_ONLY_IMAGE = {"resnet50": 2048, "resnet152": 2048}  # slow to run on CPU
SMALL_TEXT = {
    "gru": {"word_dim": 8, "hidden_dim": 12},
    "textcnn": {
        "word_dim": 8,
        "blocks": [1, 2],
        "widths": [8, 12],
        "strides": [1, 2],
        "max_len": 12,
        "max_shift": 2,
    },
    "minilm": {"trainable": True, "max_seq_length": 16},
}


def _params_without_grad(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]


def test_every_registered_encoder_has_a_contract_case():
    assert set(IMAGE_ENCODERS.names()) == set(SMALL_IMAGE) | set(BUILD_ONLY_IMAGE)
    assert set(TEXT_ENCODERS.names()) == set(SMALL_TEXT)


@pytest.mark.parametrize("name", IMAGE_ENCODERS.names())
def test_image_encoder_contract(name):
    if name.startswith("resnet"):
        pytest.importorskip(
            "torchvision", reason="the vision extra (make install TORCH=cpu has none)"
        )
    if name in BUILD_ONLY_IMAGE:
        encoder = build_image_encoder(name)
        assert encoder.out_dim == BUILD_ONLY_IMAGE[name]
        return
    options, shape = SMALL_IMAGE[name]
    encoder = build_image_encoder(name, **options).train()
    out = encoder(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))
    assert isinstance(encoder.out_dim, int)
    assert out.shape == (shape[0], encoder.out_dim)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert not _params_without_grad(encoder)
    assert any(p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_text_encoder_contract(name, vocab, captions):
    encoder = build_text_encoder(name, vocab=vocab, **SMALL_TEXT[name]).train()
    out = encoder(captions)
    assert isinstance(encoder.out_dim, int)
    assert out.shape == (len(captions), encoder.out_dim)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = _params_without_grad(encoder)
    if name == "minilm":  # BERT's pooler is unused by sentence-transformers' mean pooling
        missing = [n for n in missing if ".pooler." not in n]
    assert not missing
    if name != "minilm":
        assert encoder.vocab is vocab
