"""A tiny mFSR model end to end on CPU: named outputs, gradients to every parameter,
parts switched off, the reconstruction gradient scale, and 30 steps on a fixed
batch in which every cooperative term decreases (and each GAN player improves
against a frozen opponent)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.data.text import Vocabulary
from retrievalkit.losses import (
    CaptionReconstructionLoss,
    ImageReconstructionLoss,
    ModalityLoss,
    SpecificLoss,
    VSELoss,
)
from retrievalkit.models import build_image_encoder, build_text_encoder
from retrievalkit.models.mfsr import MFSRModel

CAPTIONS = [
    "a red car",
    "two small dogs",
    "a cat on a sofa",
    "green tree in wind",
    "blue sky",
    "an old man reading",
]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 16


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Normalized ``[n, 3, 16, 16]`` images, upsampled from 4x4 noise."""
    g = torch.Generator().manual_seed(seed)
    pixels = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=SIZE, mode="bilinear")
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def tiny_model(seed: int = 0, **options) -> MFSRModel:
    torch.manual_seed(seed)
    vocab = Vocabulary.build(CAPTIONS)
    settings = {
        "generator": {"size": SIZE, "base_channels": 8},
        "decoder": {"word_dim": 8, "hidden_dim": 16},
        "vocab": vocab,
        **options,
    }
    return MFSRModel(
        build_image_encoder("small_cnn", widths=(8, 16), out_dim=16),
        build_text_encoder("gru", vocab=vocab, word_dim=8, hidden_dim=16),
        joint_dim=16,
        part_dim=8,
        **settings,
    )


def terms(pixel_weight: float = 10.0) -> dict:
    """Term -> (loss, the outputs it takes). VSE as SH with mean reduction, so the
    five terms are of similar size; the modality margin 3 keeps its gap term active."""
    return {
        "semantic": (VSELoss(0.2, max_violation=False, reduction="mean"), ("image.se", "text.se")),
        "modality": (ModalityLoss(margin=3.0), ("image.mo", "text.mo")),
        "specific": (SpecificLoss(), ("image.se", "image.sp", "text.se", "text.sp")),
        "caption": (CaptionReconstructionLoss(), ("decoder.logits", "decoder.targets")),
        "image": (
            ImageReconstructionLoss(SIZE, 3, 8, pixel_weight=pixel_weight),
            ("recon.image", "recon.target"),
        ),
    }


def values(outputs: dict, losses: dict) -> dict:
    return {name: loss(*(outputs[k] for k in keys)) for name, (loss, keys) in losses.items()}


def test_named_outputs_and_retrieval_embedding():
    model = tiny_model()
    images = smooth_images(len(CAPTIONS), 1)
    out = model(images, CAPTIONS)
    for side in ("image", "text"):
        for part in ("mo", "se", "sp"):
            assert out[f"{side}.{part}"].shape == (6, 8)
        assert out[side] is out[f"{side}.se"]
    assert out["recon.image"].shape == out["recon.target"].shape == (6, 3, SIZE, SIZE)
    assert out["recon.target"].min() >= -1 and out["recon.target"].max() <= 1
    ids, _ = model.vocab.encode_batch(CAPTIONS)
    assert out["decoder.logits"].shape == (6, ids.shape[1] - 1, len(model.vocab))
    assert torch.equal(out["decoder.targets"], ids[:, 1:])
    assert model.retrieval == {"image": "image.se", "text": "text.se"}
    assert set(out) == set(model.output_names)
    model.eval()
    with torch.no_grad():
        out = model(images=images, captions=CAPTIONS)
        torch.testing.assert_close(model.encode_image(images), out["image.se"])
        torch.testing.assert_close(model.encode_text(CAPTIONS), out["text.se"])
        assert len(model.decode_captions(CAPTIONS[:2], max_len=4)) == 2
        assert model.reconstruct_images(images[:2]).shape == (2, 3, SIZE, SIZE)


def test_every_parameter_gets_a_gradient():
    model, losses = tiny_model(), terms()
    out = model(smooth_images(6, 1), CAPTIONS)
    sum(values(out, losses).values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing
    image_loss = losses["image"][0]
    image_loss.zero_grad()
    image_loss.adversary_loss((out["recon.image"], out["recon.target"]), torch.arange(6)).backward()
    assert all(p.grad is not None for p in image_loss.adversary_parameters())


def test_switching_a_reconstruction_off_removes_it():
    with_all = tiny_model()
    without = tiny_model(generator=None, decoder=None)
    out = without(smooth_images(6, 1), CAPTIONS)
    assert not any(k.startswith(("recon.", "decoder.")) for k in out)
    names = {n.split(".")[0] for n, _ in without.named_parameters()}
    assert "generator" not in names and "decoder" not in names
    assert sum(p.numel() for p in without.parameters()) < sum(
        p.numel() for p in with_all.parameters()
    )
    with pytest.raises(ValueError, match="vocab"):
        tiny_model(vocab=None)


def _encoder_grad(model: MFSRModel, loss_name: str) -> torch.Tensor:
    model.zero_grad()
    out = model(smooth_images(6, 1), CAPTIONS)
    losses = terms()
    loss, keys = losses[loss_name]
    loss(*(out[k] for k in keys)).backward()
    return torch.cat([p.grad.flatten() for p in model.image_encoder.parameters()])


def test_reconstruction_gradient_scale_reaches_the_encoder():
    full = _encoder_grad(tiny_model(), "image")  # tiny_model seeds: the same D weights
    half = _encoder_grad(tiny_model(recon_grad_scale=0.5), "image")
    torch.testing.assert_close(half, full * 0.5, rtol=1e-4, atol=1e-7)
    model = tiny_model(recon_grad_scale=0.0)
    out = model(smooth_images(6, 1), CAPTIONS)
    loss, keys = terms()["image"]
    loss(*(out[k] for k in keys)).backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is not None for p in model.generator.parameters())


@pytest.mark.slow
def test_thirty_steps_on_a_fixed_batch_lower_every_term():
    model, losses = tiny_model(), terms()
    image_loss = losses["image"][0]
    images, ids = smooth_images(len(CAPTIONS), 1), torch.arange(len(CAPTIONS))
    main = torch.optim.Adam(model.parameters(), lr=2e-3)
    adversary = torch.optim.Adam(image_loss.adversary_parameters(), lr=2e-4, betas=(0.5, 0.999))
    history = []
    for _ in range(30):
        out = model(images, CAPTIONS)
        adversary.zero_grad()
        image_loss.adversary_loss(
            (out["recon.image"].detach(), out["recon.target"]), ids
        ).backward()
        adversary.step()
        parts = values(out, losses)
        main.zero_grad()
        sum(parts.values()).backward()
        main.step()
        pixel = (out["recon.image"] - out["recon.target"]).abs().mean()
        history.append(
            {**{k: float(v.detach()) for k, v in parts.items()}, "pixel": float(pixel.detach())}
        )
    for name in history[0]:
        assert history[-1][name] < history[0][name], (name, history[0][name], history[-1][name])
        assert all(torch.isfinite(torch.tensor(h[name])) for h in history)


def _frozen_opponent_run(train_generator: bool) -> tuple[float, float]:
    model = tiny_model()
    image_loss = ImageReconstructionLoss(SIZE, 3, 8)  # adversarial terms only
    images, ids = smooth_images(len(CAPTIONS), 1), torch.arange(len(CAPTIONS))
    params = model.generator.parameters() if train_generator else image_loss.parameters()
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999))
    code = model.image_parts(images).code().detach()
    target = model(images, CAPTIONS)["recon.target"]
    seen = []
    for _ in range(30):
        torch.manual_seed(0)  # the same D2 positives (translations) at every step
        fake = model.generator(code)
        if train_generator:
            value = image_loss(fake, target)
        else:
            value = image_loss.adversary_loss((fake, target), ids)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        seen.append(float(value.detach()))
    return seen[0], seen[-1]


@pytest.mark.parametrize("train_generator", [True, False], ids=["generator", "discriminators"])
def test_each_gan_player_improves_against_a_frozen_opponent(train_generator):
    first, last = _frozen_opponent_run(train_generator)
    assert last < first


def test_a_smaller_generator_rebuilds_area_averaged_targets():
    model = tiny_model(generator={"size": 16, "base_channels": 4})
    big = smooth_images(2, 3)
    big = F.interpolate(big, size=32, mode="nearest")  # each pixel a 2x2 block
    target = model.reconstruction_target(big)
    assert target.shape == (2, 3, 16, 16)
    torch.testing.assert_close(target, model.reconstruction_target(smooth_images(2, 3)))
    with pytest.raises(ValueError, match="larger than the input"):
        model.reconstruction_target(smooth_images(2, 3)[:, :, :8, :8])


def test_one_side_at_a_time_and_the_registry():
    from retrievalkit.models import ModelSpec, build_model

    vocab = Vocabulary.build(CAPTIONS)
    spec = ModelSpec(
        image={"name": "small_cnn", "widths": [8, 16], "out_dim": 16, "head": "mlp"},
        text={"name": "gru", "word_dim": 8, "hidden_dim": 16, "head": "identity"},
        embed_dim=8,
        vocab=vocab,
        options={
            "joint_dim": 16,
            "generator": {"size": SIZE, "base_channels": 4},
            "decoder": {"word_dim": 8, "hidden_dim": 16},
        },
    )
    model = build_model("mfsr", spec)
    assert isinstance(model, MFSRModel) and model.pixel_mean == MEAN and model.has_text
    image_side = model(images=smooth_images(2, 1))
    assert set(image_side) == {"image.mo", "image.se", "image.sp", "image"} | {
        "recon.image",
        "recon.target",
    }
    text_side = model(captions=CAPTIONS[:2])
    assert {"text.se", "decoder.logits", "decoder.targets"} <= set(text_side)
    assert not any(k.startswith("image") for k in text_side)
    with pytest.raises(TypeError, match="unknown_option"):
        build_model("mfsr", ModelSpec(**{**spec.__dict__, "options": {"unknown_option": 1}}))
