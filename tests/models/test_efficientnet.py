"""EfficientNet-Lite towers: the packaged ImageNet weights and the declared preprocessing.

The Noto renders of a penguin, an umbrella and a guitar must reach their ImageNet
classes (king penguin 145, umbrella 879, electric guitar 546) through the encoder's
own transform: wrong weights, a wrong normalization or a wrong input side fail.
"""

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch")

from retrievalkit.data.emoji.noto import FONT_PATH, render
from retrievalkit.models import build_image_encoder
from retrievalkit.models.tower import IMAGENET_MEAN, IMAGENET_STD, image_input_of
from retrievalkit.pipeline.build import build_transform
from retrievalkit.run.config import DataConfig

needs_font = pytest.mark.skipif(not FONT_PATH.exists(), reason="needs fonts-noto-color-emoji")
EMOJI_CLASSES = {"🐧": 145, "☂️": 879, "🎸": 546}  # king penguin, umbrella, electric guitar


def imagenet_logits(encoder, spec) -> torch.Tensor:
    """Logits of the three renders through ``spec``'s transform (64 px data, as the demo)."""
    side = spec.side(64)
    pixels, ok = render(list(EMOJI_CLASSES), side)
    assert all(ok)
    transform = build_transform(spec, DataConfig(name="emoji", image_size=64), train=False)
    from PIL import Image

    images = torch.stack([transform(Image.fromarray(p)) for p in pixels])
    assert images.shape == (3, 3, side, side)
    return encoder.logits(images)


@needs_font
@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_renders_reach_their_imagenet_class_in_the_top_5(variant):
    encoder = build_image_encoder(f"efficientnet_{variant}")
    top5 = imagenet_logits(encoder, image_input_of(encoder)).topk(5).indices
    for row, wanted in zip(top5.tolist(), EMOJI_CLASSES.values(), strict=True):
        assert wanted in row, (variant, wanted, row)


@needs_font
def test_lite0_declared_normalization_beats_imagenet_statistics():
    """Top-1 for all three with the declared (x - 127) / 128; ImageNet's mean/std (the
    package example's) leaves the penguin out of the top 1: the test can tell them apart."""
    encoder = build_image_encoder("efficientnet_lite0")
    declared = image_input_of(encoder)
    assert declared.size == 224
    top1 = imagenet_logits(encoder, declared).argmax(1).tolist()
    assert top1 == list(EMOJI_CLASSES.values())
    wrong = declared.__class__(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert imagenet_logits(encoder, wrong).argmax(1).tolist() != top1


def test_frozen_tower_and_trainable_top():
    frozen = build_image_encoder("efficientnet_lite0", image_size=96)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.cached_shape == (1280,) and frozen.out_dim == 1280
    tuned = build_image_encoder("efficientnet_lite0", image_size=96, trainable_stages=1)
    trainable = {
        n.split(".")[0] + "." + n.split(".")[1]
        for n, p in tuned.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"stages.6", "head.0", "head.1"}
    assert tuned.cached_shape == (192, 3, 3)
    tuned.train()
    assert not any(m.training for m in tuned.modules())  # BN statistics stay frozen
    images = torch.randn(2, 3, 96, 96)
    cached = tuned.trunk(images)
    torch.testing.assert_close(tuned(cached), tuned(images))
    torch.testing.assert_close(tuned(images), frozen(images))  # same weights, same features
    tuned(cached).sum().backward()
    assert tuned.stages[6].blocks[0]._project_conv.weight.grad is not None
    assert frozen.cache_id != tuned.cache_id
    with pytest.raises(ValueError, match="expects images"):
        frozen(torch.randn(2, 5))


def test_multi_pool_adds_the_last_stages_averages_to_the_head_features():
    avg = build_image_encoder("efficientnet_lite0", image_size=96)
    multi = build_image_encoder("efficientnet_lite0", image_size=96, pool="multi")
    assert multi.out_dim == multi.cached_shape[0] == 1280 + 112 + 192 + 320
    images = torch.randn(2, 3, 96, 96)
    features = multi(images)
    torch.testing.assert_close(features[:, :1280], avg(images))  # the head conv's average
    x = multi.stem(images)
    for stage in multi.stages:
        x = stage(x)
    torch.testing.assert_close(features[:, -320:], x.mean(dim=(2, 3)))  # the last stage's
    assert multi.cache_id != avg.cache_id
    with pytest.raises(ValueError, match="0 with pool 'multi'"):
        build_image_encoder("efficientnet_lite0", pool="multi", trainable_stages=1)
