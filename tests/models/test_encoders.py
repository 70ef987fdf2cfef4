"""Encoder contract tests generated from the registries, plus per-encoder behaviour."""

import pytest
import torch

from retrievalkit.data import Vocabulary
from retrievalkit.models import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    build_dual_encoder,
    build_embedding_model,
    build_image_encoder,
    build_text_encoder,
)
from retrievalkit.models.image import load_state_dict_file

CAPTIONS = ["a red car on the road", "two dogs", "a cat sleeping on a very long sofa today"]
VOCAB = Vocabulary.build(CAPTIONS)
SMALL_IMAGE_OPTIONS = {
    "precomp": ({"in_dim": 12, "hidden": [16]}, torch.randn(3, 12)),
    "small_cnn": ({"widths": [4, 8], "out_dim": 8}, torch.randn(3, 3, 32, 32)),
    "resnet18": ({}, torch.randn(2, 3, 32, 32)),
}
SMALL_TEXT_OPTIONS = {
    "gru": {"word_dim": 8, "hidden_dim": 12},
    "textcnn": {"word_dim": 8, "widths": [8, 12], "blocks_per_stage": 1, "max_len": 12},
    "minilm": {"trainable": True, "max_seq_length": 16},
}


@pytest.mark.parametrize("name", IMAGE_ENCODERS.names())
def test_every_image_encoder_builds_and_trains(name):
    if name not in SMALL_IMAGE_OPTIONS:
        encoder = build_image_encoder(name)  # e.g. resnet50/152: build only (slow to run)
        assert encoder.out_dim == 2048
        return
    options, batch = SMALL_IMAGE_OPTIONS[name]
    encoder = build_image_encoder(name, **options)
    out = encoder(batch)
    assert out.shape == (batch.shape[0], encoder.out_dim)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad


@pytest.mark.parametrize("name", TEXT_ENCODERS.names())
def test_every_text_encoder_builds_and_trains(name):
    encoder = build_text_encoder(name, vocab=VOCAB, **SMALL_TEXT_OPTIONS[name])
    encoder.train()
    out = encoder(CAPTIONS)
    assert out.shape == (3, encoder.out_dim) and torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    if name == "minilm":  # the pooler of the underlying BERT is unused by mean pooling
        no_grad = [n for n in no_grad if "pooler" not in n]
    assert not no_grad


def test_gru_uses_the_state_at_the_true_length():
    encoder = build_text_encoder("gru", vocab=VOCAB, word_dim=8, hidden_dim=12).eval()
    alone = encoder(["two dogs"])
    batched = encoder(["two dogs", "a cat sleeping on a very long sofa today"])
    assert torch.allclose(alone[0], batched[0], atol=1e-6)


def test_textcnn_position_shift_only_in_training():
    encoder = build_text_encoder("textcnn", vocab=VOCAB, **SMALL_TEXT_OPTIONS["textcnn"])
    encoder.eval()
    assert torch.equal(encoder(CAPTIONS), encoder(CAPTIONS))


def test_frozen_minilm_caches_and_has_no_gradients():
    encoder = build_text_encoder("minilm", trainable=False)
    assert encoder.out_dim == 384
    assert all(not p.requires_grad for p in encoder.parameters())
    first = encoder(CAPTIONS[:2])
    assert len(encoder._cache) == 2
    assert torch.equal(first, encoder(CAPTIONS[:2]))
    assert not first.requires_grad


def test_word_vectors_from_text_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("3 4\nred 1 2 3 4\ncar 0 0 0 1\nunseen 9 9 9 9\n")
    encoder = build_text_encoder(
        "gru", vocab=VOCAB, word_dim=4, hidden_dim=6, word_vectors_path=str(path)
    )
    assert encoder.embed.weight[VOCAB.index["red"]].tolist() == [1, 2, 3, 4]
    (tmp_path / "bad.txt").write_text("red 1 2\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: 2 numbers, expected 4"):
        build_text_encoder(
            "gru",
            vocab=VOCAB,
            word_dim=4,
            hidden_dim=6,
            word_vectors_path=str(tmp_path / "bad.txt"),
        )


def test_resnet_weights_from_a_local_file_and_freezing(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    encoder = build_image_encoder(
        "resnet18", weights_path=str(tmp_path / "r18.pth"), trainable=False
    )
    encoder.train()
    assert not encoder.net.training  # frozen BN stays in eval mode
    x = torch.randn(2, 3, 32, 32)
    reference.fc = torch.nn.Identity()
    assert torch.allclose(encoder(x), reference(x), atol=1e-5)
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.set_trainable(True)
    assert all(p.requires_grad for p in encoder.parameters())
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth: not a PyTorch weights file"):
        load_state_dict_file(tmp_path / "bad.pth")


def test_dual_encoder_outputs_are_unit_norm():
    model = build_dual_encoder(
        {"name": "small_cnn", "widths": [4], "out_dim": 8},
        {"name": "gru", "word_dim": 4, "hidden_dim": 6},
        embed_dim=5,
        vocab=VOCAB,
    )
    out = model(torch.randn(3, 3, 16, 16), CAPTIONS)
    assert torch.allclose(out.image.norm(dim=1), torch.ones(3))
    assert torch.allclose(out.text.norm(dim=1), torch.ones(3))
    metric = build_embedding_model(
        {"name": "small_cnn", "in_channels": 1, "widths": [4], "out_dim": 8}, 6
    )
    assert torch.allclose(metric.encode(torch.randn(2, 1, 16, 16)).norm(dim=1), torch.ones(2))


def test_unknown_encoder_option_names_the_encoder():
    with pytest.raises(TypeError, match="cannot build image encoder 'small_cnn'"):
        build_image_encoder("small_cnn", depth=3)
    with pytest.raises(KeyError, match="unknown text encoder 'bert'"):
        build_text_encoder("bert")


def test_identity_head_keeps_the_encoder_space():
    from retrievalkit.models import ProjectionHead

    head = ProjectionHead(6, 6, kind="identity")
    x = torch.randn(3, 6)
    assert torch.equal(head(x), x)
    with pytest.raises(ValueError, match="identity head needs in_dim == out_dim"):
        ProjectionHead(6, 5, kind="identity")
