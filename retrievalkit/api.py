"""The Python API: ``import retrievalkit as rk``, spelled as sentence-transformers and
open_clip users already type it.

- ``rk.load(run_dir, device="auto")`` -> :class:`Encoder`: the trained model with its
  preprocessing. ``encode_text(sentences)`` and ``encode_image(images)`` (paths, PIL
  images, numpy arrays, preprocessed tensors) take sentence-transformers' keywords
  (``batch_size``, ``show_progress_bar``, ``normalize_embeddings``,
  ``convert_to_numpy``, ``convert_to_tensor``, ``device``): one input gives ``[E]``,
  a list ``[N, E]``; ``encode_images`` is the old name of ``encode_image``.
- ``rk.similarity(a, b)``: cosine similarities ``[N, M]``;
  ``rk.semantic_search(query_emb, corpus_emb, top_k)``: per query, a list of
  ``{"corpus_id", "score"}``, best first, over any embeddings.
- ``rk.SearchEngine(index_dir)``: search an index made by ``retrievalkit index build``.
- ``rk.train(recipe, out=..., overrides=[...])``: train a recipe (a shipped name
  such as ``"emoji_vsepp"`` or a YAML path) into a run directory.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrievalkit.errors import InputError
from retrievalkit.index.semantic import semantic_search, similarity
from retrievalkit.models.tower import image_input_of
from retrievalkit.pipeline.build import model_transform
from retrievalkit.pipeline.images import ImageLike, as_list, is_one_image, to_model_input
from retrievalkit.pipeline.load import LoadedModel, load_model
from retrievalkit.run.device import resolve_device
from retrievalkit.search import SearchEngine

__all__ = ["Encoder", "SearchEngine", "load", "semantic_search", "similarity", "train"]


def _unnormalized(encode: Callable[..., Tensor]) -> Callable[[Any], Tensor] | None:
    """``encode`` asked for rows before L2 normalization, when the tower offers them."""
    if "normalize" in inspect.signature(encode).parameters:
        return lambda batch: encode(batch, normalize=False)
    return None


class Encoder:
    """A trained model in eval mode with the recipe's evaluation transform.

    Images may be file paths, PIL images, numpy arrays or tensors; a tensor is taken
    as already preprocessed model input: ``[C, H, W]`` (one image) or
    ``[B, C, H, W]``, or features ``[F]`` / ``[B, F]`` for a model whose image encoder
    takes features (see :mod:`retrievalkit.pipeline.images`). Paths, PIL images and
    arrays go through the preprocessing the image encoder declares (``image_input``:
    side and normalization), as ``index`` and ``search`` do.
    """

    def __init__(self, loaded: LoadedModel, batch_size: int = 32) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.config = loaded.config
        self.batch_size = batch_size
        self.image_input = image_input_of(self.model)
        self.features = self.image_input.kind == "feature"
        self.transform: Callable[[Any], Tensor] = model_transform(
            self.model, self.config.data, train=False
        )
        self.mode = "L" if self.image_input.channels == 1 else "RGB"

    @property
    def device(self) -> torch.device:
        """Where the model runs (``encode_*(device=...)`` moves it)."""
        return next(self.model.parameters()).device

    @property
    def has_text(self) -> bool:
        """Whether the model embeds text (cross-modal) or images only."""
        return self.model.has_text

    def _run(
        self,
        items: list[Any],
        encode: Callable[[list[Any]], Tensor],
        batch_size: int | None,
        show_progress_bar: bool | None,
        convert_to_numpy: bool,
        convert_to_tensor: bool,
        device: str | None,
        single: bool,
        normalize: bool,
    ) -> np.ndarray | Tensor:
        """Encode ``items`` in batches -> ``[N, E]`` (``[E]`` when ``single``)."""
        from tqdm.auto import tqdm

        if not items:
            raise InputError("no inputs given to encode")
        if device is not None:
            self.model.to(resolve_device(device))
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise InputError(f"batch_size must be >= 1, got {size}")
        shown = sys.stderr.isatty() if show_progress_bar is None else show_progress_bar
        starts = range(0, len(items), size)
        with torch.no_grad():
            rows = torch.cat(
                [
                    encode(items[start : start + size]).float()
                    for start in tqdm(starts, desc="encode", disable=not shown, leave=False)
                ]
            )
        if normalize:
            rows = torch.nn.functional.normalize(rows, dim=-1)
        rows = rows[0] if single else rows
        if convert_to_tensor:
            return rows
        return rows.cpu().numpy() if convert_to_numpy else rows.cpu()

    def encode_text(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = True,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
    ) -> np.ndarray | Tensor:
        """Captions -> float32 embeddings: ``[E]`` for one string, ``[N, E]`` for a list
        (cross-modal models only).

        Args:
            batch_size: sentences per model call (default: the encoder's, 32).
            show_progress_bar: a bar over the batches (default: when stderr is a
                terminal).
            normalize_embeddings: unit-length rows (default, the space is cosine);
                False gives the tower's rows before normalization where it has them.
            convert_to_numpy / convert_to_tensor: a numpy array (default) or a tensor
                on the model's device (``convert_to_tensor`` wins, as in
                sentence-transformers); ``convert_to_numpy=False`` alone gives a CPU
                tensor.
            device: run on this device from now on (``auto``, ``cpu``, ``cuda``...).
        """
        if not self.has_text:
            raise InputError(f"{self.config.name}: an image-only model has no text encoder")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(text, str) for text in texts):
            raise InputError("encode_text: expected a string or a list of strings")
        raw = None if normalize_embeddings else _unnormalized(self.model.encode_text)
        return self._run(
            texts,
            raw or self.model.encode_text,
            batch_size,
            show_progress_bar,
            convert_to_numpy,
            convert_to_tensor,
            device,
            single,
            normalize_embeddings,
        )

    def encode_image(
        self,
        images: ImageLike | Sequence[ImageLike],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = True,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
    ) -> np.ndarray | Tensor:
        """Images -> float32 embeddings: ``[E]`` for one image, ``[N, E]`` for several
        (a list, an array ``[N, H, W(, C)]`` or a tensor ``[N, C, H, W]``); the
        keywords are :meth:`encode_text`'s."""
        feature_dims = 1 if self.features else 3
        single = is_one_image(images, feature_dims)
        items = as_list(images, feature_dims)
        model_encode = self.model.encode_image
        raw = None if normalize_embeddings else _unnormalized(model_encode)

        def prepare(item: Any) -> Tensor:
            if self.features and not isinstance(item, Tensor):
                return self.transform(item)  # a feature vector [F]
            return to_model_input(item, self.transform, self.mode)

        def encode(batch: list[Any]) -> Tensor:
            tensors = [prepare(item) for item in batch]
            return (raw or model_encode)(torch.stack(tensors).to(self.device))

        return self._run(
            items,
            encode,
            batch_size,
            show_progress_bar,
            convert_to_numpy,
            convert_to_tensor,
            device,
            single,
            normalize_embeddings,
        )

    encode_images = encode_image  # the name before open_clip's, kept


def load(run_dir: str | Path, device: str | None = "auto", batch_size: int = 32) -> Encoder:
    """The model of a run directory (its best checkpoint) or of a checkpoint directory,
    on ``device`` (``auto``: cuda when available, else cpu); ``batch_size`` is the
    default of every ``encode_*`` call."""
    return Encoder(load_model(run_dir, resolve_device(device)), batch_size=batch_size)


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
    from retrievalkit.training.launch import train_recipe

    return train_recipe(recipe, out, overrides, device, resume=resume, progress=progress)[0]
