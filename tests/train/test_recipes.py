"""Every recipe in configs/ parses, builds its model and losses, and runs one step."""

from pathlib import Path

import pytest
import torch

from retrievalkit.data import Vocabulary
from retrievalkit.pipeline.build import build_model, text_encoder_needs_vocab
from retrievalkit.run.config import load_config
from retrievalkit.train.objective import Objective, build_loss_modules, loss_keys

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.stem for p in CONFIGS}
    expected = {
        "vsepp_coco_precomp",
        "vsepp_f30k_precomp",
        "vsepp_coco_resnet_ft",
        "vse0_coco_precomp",
        "emoji_vsepp",
        "emoji_vse0",
        "emoji_dualpath",
        "emoji_textcnn_vsepp",
        "dualpath_coco_resnet",
    } | {
        f"{data}_{x}"
        for data in ("fashion_mnist", "emoji_id")
        for x in ("ms", "contrastive", "triplet", "lifted", "binomial", "smoothap")
    }
    assert expected <= names


def fake_batch(config, batch_size: int):
    image = config.model.image
    if image["name"] == "precomp":
        images = torch.randn(batch_size, image.get("in_dim", 2048))
    else:
        channels = image.get("in_channels", 3)
        size = 32 if image["name"].startswith("resnet") else config.data.image_size
        images = torch.randn(batch_size, channels, size, size)
    ids = torch.arange(batch_size) % max(batch_size // 4, 2)
    return images, ids


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_builds_and_steps(path):
    config = load_config(path)
    captions = ["a small red car", "two dogs play", "a cat", "a house by the sea"] * 2
    vocab = Vocabulary.build(captions) if text_encoder_needs_vocab(config.model) else None
    model = build_model(config, vocab)
    losses = build_loss_modules(config, {"num_instances": 8, "dim": config.model.embed_dim})
    available = set(model.output_names) | {"ids", "images"}
    objective = Objective(config.stages[-1], losses, loss_keys(config), available)
    images, ids = fake_batch(config, 8)
    model.train()
    if model.has_text:
        outputs = model(images=images, captions=captions)
        ids = torch.arange(8)
    else:
        outputs = model(images=images)
    result = objective({**outputs, "ids": ids, "images": images})
    assert torch.isfinite(result.total)
    result.total.backward()
    assert any(p.grad is not None for p in model.parameters())
