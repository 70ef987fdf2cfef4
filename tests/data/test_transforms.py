"""Image transforms: shapes, normalization, both backends, determinism under torch's RNG."""

import numpy as np
import pytest
import torch
from PIL import Image

from retrievalkit.data.transforms import RGB_MEAN, RGB_STD, build_transform


def picture(h=50, w=70, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_train_and_eval_shapes_and_determinism(backend):
    if backend == "torchvision":
        pytest.importorskip(
            "torchvision", reason="the vision extra (make install TORCH=cpu has none)"
        )
    image = picture()
    train = build_transform("image", 32, train=True, flip=True, backend=backend)
    torch.manual_seed(1)
    a = train(image)
    torch.manual_seed(1)
    b = train(image)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, train(image))  # the RNG moved on
    evaluate = build_transform("image", 32, train=False, backend=backend)
    assert torch.equal(evaluate(image), evaluate(image))
    grey = evaluate(np.full((40, 40), 255, dtype=np.uint8))
    assert grey.shape == (1, 32, 32) and torch.allclose(grey, torch.ones_like(grey))


def test_eval_is_the_same_in_both_backends_and_normalized():
    pytest.importorskip("torchvision", reason="the vision extra (make install TORCH=cpu has none)")
    image = picture(64, 48)
    tv = build_transform("image", 40, train=False, backend="torchvision")(image)
    pil = build_transform("image", 40, train=False, backend="pil")(image)
    assert torch.equal(tv, pil)
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    out = build_transform("image", 40, train=False)(white)
    expected = (1 - torch.tensor(RGB_MEAN)) / torch.tensor(RGB_STD)
    assert torch.allclose(out[:, 0, 0], expected)


def test_center_crop_keeps_the_middle():
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, 20:40] = 255  # a white middle third
    out = build_transform("image", 20, train=False, backend="pil")(pixels)
    assert (out > 0).all()  # only the white middle survives the centre crop


def test_features_pass_through_and_bad_arguments():
    features = np.arange(6, dtype=np.float64)
    out = build_transform("feature", 0, train=True)(features)
    assert out.dtype == torch.float32 and out.tolist() == list(range(6))
    with pytest.raises(ValueError, match="unknown source kind"):
        build_transform("audio", 8, train=False)
    with pytest.raises(ValueError, match="unknown backend"):
        build_transform("image", 8, train=False, backend="cv2")
