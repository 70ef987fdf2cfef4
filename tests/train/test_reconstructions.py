"""The end-of-run mFSR pictures: reconstructions.png rows and captions.txt lines."""

from __future__ import annotations

from PIL import Image

from retrievalkit.training.reconstructions import save_reconstructions
from tests.models.test_mfsr_model import CAPTIONS, smooth_images, tiny_model


def test_writes_the_grid_and_the_decoded_captions(tmp_path):
    model = tiny_model()
    keys = [f"k{i}" for i in range(4)]
    paths = save_reconstructions(model, smooth_images(4, 1), CAPTIONS[:4], keys, tmp_path)
    assert [p.name for p in paths] == ["reconstructions.png", "captions.txt"]
    with Image.open(tmp_path / "reconstructions.png") as image:
        width, height = image.size
    assert height > 4 * 100 and width > height / 4  # four rows of pictures and text
    lines = (tmp_path / "captions.txt").read_text().splitlines()
    assert lines[0] == "image\ttrue caption\tdecoded caption" and len(lines) == 5
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        [k, c] for k, c in zip(keys, CAPTIONS[:4], strict=True)
    ]
    assert model.training  # left as it was


def test_without_a_decoder_only_the_picture(tmp_path):
    model = tiny_model(decoder=None)
    paths = save_reconstructions(model, smooth_images(2, 1), CAPTIONS[:2], ["a", "b"], tmp_path)
    assert [p.name for p in paths] == ["reconstructions.png"]
