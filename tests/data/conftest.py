"""Helpers for data tests: tiny image files written into tmp_path."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, value: int = 0, size: tuple[int, int] = (12, 10)) -> Path:
    """A small solid-ish RGB image (JPEG or PNG by suffix) whose pixels encode ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., 0] = (value * 37) % 256
    pixels[..., 1] = (value * 91) % 256
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def image_writer():
    return write_image
