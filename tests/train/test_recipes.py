"""Every recipe in configs/ parses, builds its model and losses, and runs one step."""

from pathlib import Path

import pytest
import torch

from retrievalkit.data import Vocabulary
from retrievalkit.models.tower import frozen_trunk_of, image_input_of
from retrievalkit.pipeline.build import build_model, text_encoder_needs_vocab
from retrievalkit.run.config import load_config
from retrievalkit.training.objective import Objective, build_loss_modules, loss_keys

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))

# The paper-scale mFSR recipes (~450M parameters at width 3072, ResNet-152, whose
# step vsepp_coco_resnet_ft already checks) are checked at small widths on a
# ResNet-18 here, with every part and term kept.
_SMALL_MFSR = [
    "model.image={name: resnet18, weights_path: null, head: linear}",
    "model.embed_dim=32",
    "model.options.joint_dim=32",
    "model.text.hidden_dim=32",
    "model.text.num_layers=2",
    "model.options.generator.base_channels=4",
    "model.options.decoder.hidden_dim=16",
    "stages.0.losses.4.options.base_channels=4",
]
SMALLER = {"mfsr_coco": _SMALL_MFSR, "mfsr_f30k": _SMALL_MFSR}


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
        "mfsr_emoji",
        "mfsr_f30k",
        "mfsr_coco",
    } | {
        f"{data}_{x}"
        for data in ("fashion_mnist", "emoji_id")
        for x in ("ms", "contrastive", "triplet", "lifted", "binomial", "smoothap")
    }
    assert expected <= names


def fake_batch(config, model, batch_size: int):
    image = config.model.image
    trunk = frozen_trunk_of(model)
    if trunk is not None:  # training feeds a frozen tower its cached trunk outputs
        images = torch.randn(batch_size, *trunk.cached_shape)
    elif image_input_of(model).kind == "feature":
        images = image_input_of(model).example(batch_size, config.data.image_size)
    else:
        channels = image.get("in_channels", 3)
        size = 32 if image["name"].startswith("resnet") else config.data.image_size
        generator = config.model.options.get("generator") or {}
        size = max(size, generator.get("size", 0))  # a generator rebuilds >= its size
        images = torch.randn(batch_size, channels, size, size)
    ids = torch.arange(batch_size) % max(batch_size // 4, 2)
    return images, ids


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_builds_and_steps(path):
    config = load_config(path, SMALLER.get(path.stem, []))
    if config.model.image["name"].startswith("resnet"):
        pytest.importorskip(
            "torchvision", reason="the vision extra (make install TORCH=cpu has none)"
        )
    captions = ["a small red car", "two dogs play", "a cat", "a house by the sea"] * 2
    vocab = Vocabulary.build(captions) if text_encoder_needs_vocab(config.model) else None
    model = build_model(config, vocab)
    losses = build_loss_modules(config, {"num_instances": 8, "dim": config.model.embed_dim})
    available = set(model.output_names) | {"ids", "images"}
    objective = Objective(config.stages[-1], losses, loss_keys(config), available)
    images, ids = fake_batch(config, model, 8)
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


FASHION = [p for p in CONFIGS if p.stem.startswith("fashion_mnist_")]


def test_fashion_mnist_recipes_differ_only_in_their_loss():
    """The loss comparison's premise: same data, batches, encoder, optimizer, epochs."""
    import dataclasses

    configs = [load_config(p) for p in FASHION]
    shared = [dataclasses.replace(c, name="", stages=()) for c in configs]
    assert len(configs) >= 6 and all(s == shared[0] for s in shared)
    assert {c.stages[0].epochs for c in configs} == {configs[0].stages[0].epochs}
    assert len({repr(c.stages[0].losses) for c in configs}) == len(configs)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").exists(), reason="no dataset-fashion-mnist"
)
def test_fashion_mnist_recipe_data_path_gives_the_plain_loops_tensors_and_batches():
    """What the trainer feeds the model is the plain loop's input (pixels / 255, shifted to
    [-1, 1]), in P x K batches of 5 classes x 25 with 240 steps an epoch."""
    import numpy as np

    from retrievalkit.pipeline.build import build_transform, load_splits
    from retrievalkit.training.data_loading import make_batch_sampler, make_train_loader

    config = load_config(FASHION[0], ["data.options.limit=3000"])
    split = load_splits(config.data)["train"]
    transform = build_transform("image", config.data, train=True)
    loader = make_train_loader(split, config.data, transform, False, seed=0, epoch=0)
    batch = next(iter(loader))
    sampler = make_batch_sampler(split, config.data, False, seed=0)
    sampler.set_epoch(0)
    indices = next(iter(sampler))
    raw = np.stack([np.asarray(split.images.load(i)) for i in indices])
    plain = torch.from_numpy(raw.astype(np.float32) / 255.0)[:, None]
    assert torch.equal(batch.images, (plain - 0.5) / 0.5)
    assert torch.equal(batch.ids, torch.as_tensor(split.labels[indices]))
    assert batch.images.shape == (125, 1, 28, 28)
    assert torch.equal(torch.bincount(batch.ids, minlength=5)[:5], torch.full((5,), 25))
    full = load_config(FASHION[0])
    counts = np.bincount(load_splits(full.data)["train"].labels)
    assert counts[:5].min() // full.data.samples_per_class == 240
