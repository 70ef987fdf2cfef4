"""A small served index shared by the service fuzz, load and browser tests.

Emoji (Debian fonts + CLDR) when installed, so the page shows pictures; the
synthetic shapes otherwise. One epoch of a tiny dual encoder, built once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrievalkit.data.emoji.noto import CLDR_ROOT, FONT_PATH

HAVE_EMOJI = FONT_PATH.exists() and (CLDR_ROOT / "annotations" / "en.xml").exists()


def tiny_recipe(emoji: bool) -> dict:
    data = (
        {"name": "emoji", "options": {"size": 32, "limit": 80}}
        if emoji
        else {"name": "synthetic_shapes", "options": {"n_images": 48, "size": 16}}
    )
    return {
        "name": "tiny_served",
        "task": "cross_modal",
        "data": {**data, "image_size": 32 if emoji else 16, "batch_size": 16, "augment": False},
        "model": {
            "image": {"name": "small_cnn", "widths": [8, 16], "out_dim": 16},
            "text": {"name": "gru", "word_dim": 16, "hidden_dim": 16},
            "embed_dim": 16,
        },
        "optim": {"lr": 2e-3},
        "losses": [{"name": "vse", "options": {"max_violation": False}}],
        "epochs": 2,
    }


@pytest.fixture(scope="session")
def served_index(tmp_path_factory) -> Path:
    """An index directory (``retrievalkit index build``) of a freshly trained tiny model."""
    import torch

    from retrievalkit.run.config import parse_config
    from retrievalkit.search import build_index_dir
    from retrievalkit.training.trainer import Trainer

    root = tmp_path_factory.mktemp("served")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(parse_config(tiny_recipe(HAVE_EMOJI)), root / "run", progress=False)
        trainer.fit()
        return build_index_dir(root / "run", root / "index", progress=False)
    finally:
        torch.set_num_threads(threads)
