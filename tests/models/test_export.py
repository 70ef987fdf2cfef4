"""ONNX export per tower: onnxruntime equals torch, also for batch sizes (and, for the
GRU, caption lengths) other than the example's; metric models; clear refusals."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")
import onnxruntime as ort

from retrievalkit.data import Vocabulary
from retrievalkit.export import EXAMPLE_CAPTIONS, example_images, export_onnx
from retrievalkit.pipeline.build import build_model
from retrievalkit.run.config import parse_config

CAPTIONS = ["a small red car", "two dogs play in the park", "a cat", "a house by the sea"]
TEXT_TOWERS = {
    "gru": {"name": "gru", "word_dim": 8, "hidden_dim": 16},
    "textcnn": {
        "name": "textcnn",
        "word_dim": 8,
        "blocks": [1, 1],
        "widths": [8, 16],
        "strides": [1, 2],
        "bottleneck": False,
        "max_len": 8,
        "max_shift": 2,
    },
}


def cross_modal(text):
    return parse_config(
        {
            "name": "t",
            "task": "cross_modal",
            "data": {"name": "synthetic_shapes", "image_size": 16},
            "model": {
                "image": {"name": "small_cnn", "widths": [8, 16], "out_dim": 16},
                "text": text,
                "embed_dim": 8,
            },
            "losses": [{"name": "vse"}],
        }
    )


def assert_runs_like(path, inputs, expected):
    """onnxruntime on ``path`` with ``inputs`` gives ``expected`` (to 1e-5)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("tower", ["gru", "textcnn"])
def test_both_towers_match_torch_on_new_shapes(tmp_path, tower):
    torch.manual_seed(0)
    config = cross_modal(TEXT_TOWERS[tower])
    model = build_model(config, Vocabulary.build(CAPTIONS)).eval()
    manifest = export_onnx(model, tmp_path, example_images(model, config), EXAMPLE_CAPTIONS)
    assert manifest["towers"]["image"]["max_abs_diff"] < 1e-5
    assert manifest["towers"]["text"]["exported"]
    images = torch.randn(5, 3, 16, 16)  # another batch size than the example's 3
    with torch.no_grad():
        assert_runs_like(
            tmp_path / "image_encoder.onnx", {"images": images}, model.encode_image(images)
        )
        new = ["a cat", "dogs", "a small red car by the sea in the park", "house", "two"]
        tokens = model.text_encoder.tokenize(new)  # longer captions than the examples
        assert_runs_like(tmp_path / "text_encoder.onnx", tokens, model.encode_text(new))
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["towers"]["text"]["embed_dim"] == 8 and (tmp_path / "vocab.json").exists()


def test_metric_model_exports_the_image_tower_only(tmp_path):
    config = parse_config(
        {
            "name": "m",
            "task": "metric",
            "data": {"name": "fashion_mnist", "image_size": 28},
            "model": {
                "image": {"name": "small_cnn", "widths": [8], "out_dim": 8, "in_channels": 1},
                "embed_dim": 4,
            },
            "losses": [{"name": "multi_similarity"}],
        }
    )
    model = build_model(config).eval()
    manifest = export_onnx(model, tmp_path, example_images(model, config))
    assert set(manifest["towers"]) == {"image"}
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert_runs_like(tmp_path / "image_encoder.onnx", {"images": images}, model.encode(images))


def test_bidirectional_gru_is_refused_clearly():
    config = cross_modal({"name": "gru", "word_dim": 8, "hidden_dim": 16, "bidirectional": True})
    model = build_model(config, Vocabulary.build(CAPTIONS)).eval()
    with pytest.raises(ValueError, match="bidirectional GRU"):
        model.text_encoder.forward_tokens(**model.text_encoder.tokenize(CAPTIONS))
