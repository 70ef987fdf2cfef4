"""The Python API: ``import retrievalkit as rk``.

- ``rk.load(run_dir)`` -> :class:`Encoder`: the trained model with its
  preprocessing; ``encode_text(list[str])`` and ``encode_images(paths | PIL
  images | tensors)`` return ``np.ndarray [N, E]`` (L2-normalized rows).
- ``rk.SearchEngine(index_dir)``: search an index made by ``retrievalkit index build``.
- ``rk.train(recipe, out=..., overrides=[...])``: train a recipe (a shipped name
  such as ``"emoji_vsepp"`` or a YAML path) into a run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from retrievalkit.pipeline.build import build_transform
from retrievalkit.pipeline.load import LoadedModel, load_model
from retrievalkit.search import SearchEngine

__all__ = ["Encoder", "SearchEngine", "load", "train"]

ImageLike = str | Path | Image.Image | Tensor


class Encoder:
    """A trained model in eval mode with the recipe's evaluation transform.

    Images may be file paths, PIL images or tensors. A tensor is taken as already
    preprocessed model input: ``[C, H, W]`` (one image) or ``[B, C, H, W]``, or
    features ``[F]`` / ``[B, F]`` for a precomputed-feature model.
    """

    def __init__(self, loaded: LoadedModel, batch_size: int = 256) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.config = loaded.config
        self.batch_size = batch_size
        self.features = self.config.model.image.get("name") == "precomp"
        self.transform: Callable[[Any], Tensor] = build_transform(
            "feature" if self.features else "image", self.config.data, train=False
        )
        self.mode = "L" if self.config.model.image.get("in_channels", 3) == 1 else "RGB"
        self.device = next(self.model.parameters()).device

    @property
    def has_text(self) -> bool:
        """Whether the model embeds text (cross-modal) or images only."""
        return self.model.has_text

    def _prepare(self, item: ImageLike) -> list[Tensor]:
        if isinstance(item, Tensor):
            single = item.dim() == (1 if self.features else 3)
            return [item] if single else list(item.unbind(0))
        if isinstance(item, str | Path):
            with Image.open(item) as image:
                return [self.transform(image.convert(self.mode))]
        if isinstance(item, Image.Image):
            return [self.transform(item.convert(self.mode))]
        raise TypeError(f"encode_images: expected paths, PIL images or tensors, got {type(item)}")

    @torch.no_grad()
    def encode_images(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Images -> ``[N, E]`` float32 embeddings, in batches of ``batch_size``."""
        if isinstance(images, str | Path | Image.Image | Tensor):
            images = [images]
        tensors = [t for item in images for t in self._prepare(item)]
        if not tensors:
            raise ValueError("encode_images: no images given")
        chunks = [
            self.model.encode_image(torch.stack(tensors[i : i + self.batch_size]).to(self.device))
            for i in range(0, len(tensors), self.batch_size)
        ]
        return torch.cat(chunks).float().cpu().numpy()

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """Captions -> ``[N, E]`` float32 embeddings (cross-modal models only)."""
        if not self.has_text:
            raise ValueError(f"{self.config.name}: an image-only model has no text encoder")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("encode_text: no texts given")
        chunks = [
            self.model.encode_text(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return torch.cat(chunks).float().cpu().numpy()


def load(run_dir: str | Path, device: str = "cpu", batch_size: int = 256) -> Encoder:
    """The model of a run directory (its best checkpoint) or of a checkpoint directory."""
    return Encoder(load_model(run_dir, device), batch_size=batch_size)


def train(
    recipe: str | Path,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``recipe`` (a shipped recipe's name or a YAML path) into ``out``
    (default ``runs/<recipe name>``) and return the run directory; its test
    scores are in ``metrics.json``. ``overrides`` are ``key.path=value`` strings,
    as ``--set`` takes them. Under ``torchrun`` each rank calls it."""
    from retrievalkit.train.launch import train_recipe

    return train_recipe(recipe, out, overrides, device, resume=resume, progress=progress)[0]
