"""Load a trained model (and its recipe) from a checkpoint or run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from retrievalkit.pipeline.build import build_model, load_vocab
from retrievalkit.run.checkpoint import VOCAB_FILE, CheckpointError, load_checkpoint
from retrievalkit.run.config import RunConfig, parse_config


@dataclass
class LoadedModel:
    """A model in eval mode with the recipe it was trained from."""

    model: torch.nn.Module
    config: RunConfig
    checkpoint_dir: Path
    trainer_state: dict


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the recipe's model and load the checkpoint's weights (``weights_only``)."""
    content = load_checkpoint(path)
    config = parse_config(content.config, source=str(content.path / "config.yaml"))
    vocab = None
    if (content.path / VOCAB_FILE).exists():
        vocab = load_vocab(content.path / VOCAB_FILE)
    model = build_model(config, vocab)
    missing, unexpected = model.load_state_dict(content.prefixed("model"), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{content.path}: weights do not fit the recipe's model "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(device).eval()
    return LoadedModel(model, config, content.path, content.trainer_state)
