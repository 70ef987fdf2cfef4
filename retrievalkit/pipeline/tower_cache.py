"""Frozen image-tower features, computed once per image and cached on disk by content.

An image encoder that declares a ``frozen_trunk`` (``models/tower.py``) gives the
same trunk output for the same input every time, so the trunk runs once per
(image, view) and its outputs are kept:

- on disk under ``<cache>/features/<cache_id>/`` (``cache_id`` names network,
  weights, input side, cut and pooling; ``<cache>`` is ``$RETRIEVALKIT_CACHE`` or
  ``~/.cache/retrievalkit``, the emoji renders' cache), as ``part-*.npz`` files of
  ``keys`` and float16 ``rows``, each written whole (temporary file, rename);
- in memory on the encoder (``feature_cache``), like MiniLM's caption cache.

A row's key is the sha256 of the image's pixels (mode, size, bytes) and the view:
view 0 is the evaluation transform; views ``1..V-1`` are the training transform
(random resized crop) drawn once with a seed taken from the pixels' hash, so a
second run, with another head, loss or seed, finds every row and trains at once.
Missing rows are computed in batches with a tqdm bar, by the trunk exported to ONNX
and run with onnxruntime (about 5x PyTorch's images/s on 2 CPU cores:
``benchmarks/feature_extraction.py``; PyTorch when onnxruntime is missing).

``cached_views(model, source, ...)`` gives a source of these rows (kind "feature"):
evaluation reads view 0, training draws one of the V views per item from torch's
RNG (seeded per item by the training loader, so a resumed run draws the same).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from retrievalkit.models.tower import FrozenTrunk, frozen_trunk_of, image_encoder_of
from retrievalkit.run.feature_store import STORE_DTYPE, FeatureStore, cache_root

log = logging.getLogger(__name__)


def item_digest(item: Any) -> str:
    """sha256 of an item's content: a PIL image's mode, size and pixels, or an array's
    dtype, shape and bytes."""
    digest = hashlib.sha256()
    if isinstance(item, Image.Image):
        digest.update(f"{item.mode}{item.size}".encode())
        digest.update(item.tobytes())
    else:
        array = np.ascontiguousarray(item)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def source_digests(source: Any) -> list[str]:
    """``item_digest`` of every item of ``source``, kept on the source object when it
    takes attributes (sources are read-only: their items never change), so the
    per-epoch validation hashes its images once."""
    digests = getattr(source, "content_digests", None)
    if digests is None or len(digests) != len(source):
        digests = [item_digest(source.load(i)) for i in range(len(source))]
        with suppress(AttributeError):  # a source with __slots__ keeps none
            source.content_digests = digests
    return digests


def view_key(digest: str, view: int) -> str:
    """The store key of view ``view`` of the item with content hash ``digest``."""
    return f"{digest}-v{view}"


class TrunkRunner:
    """Runs a frozen trunk on image batches: onnxruntime (the trunk exported once to
    ``<store>/trunk.onnx``) when importable, else PyTorch."""

    def __init__(self, trunk: FrozenTrunk, directory: Path) -> None:
        self.trunk, self.directory = trunk, directory
        self.session: Any | None = None
        self.tried = False

    def _session(self, side: int) -> Any | None:
        if self.tried:
            return self.session
        self.tried = True
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        path = self.directory / "trunk.onnx"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            export_trunk(self.trunk, path, side)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle workers sleep rather than spin: training runs in this process next
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self.session

    def __call__(self, images: Tensor) -> np.ndarray:
        """``[B, C, S, S]`` -> ``[B, *cached_shape]`` float32."""
        session = self._session(images.shape[-1])
        if session is None:
            device = next(iter(self.trunk.parameters())).device  # type: ignore[attr-defined]
            with torch.no_grad():
                return self.trunk.trunk(images.to(device)).float().cpu().numpy()
        return session.run(None, {"images": images.numpy()})[0]


class _TrunkModule(torch.nn.Module):
    def __init__(self, trunk: FrozenTrunk) -> None:
        super().__init__()
        self.owner = trunk

    def forward(self, images: Tensor) -> Tensor:
        return self.owner.trunk(images)


def export_trunk(trunk: FrozenTrunk, path: Path, side: int) -> None:
    """The trunk as ONNX (``images [N, 3, side, side] -> features``), written whole."""
    device = next(iter(trunk.parameters())).device  # type: ignore[attr-defined]
    example = torch.zeros(2, 3, side, side, device=device)
    temporary = path.with_suffix(".onnx.tmp")
    with quiet_onnx_export():
        torch.onnx.export(
            _TrunkModule(trunk).eval(),
            (example,),
            str(temporary),
            input_names=["images"],
            output_names=["features"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    os.replace(temporary, path)


@contextmanager
def quiet_onnx_export() -> Iterator[None]:
    """Keep the exporter's per-pass INFO lines (hundreds) out of the run's log."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class TowerCache:
    """The rows of one frozen trunk: memory, then disk, then computed (and stored)."""

    def __init__(self, trunk: FrozenTrunk, root: Path | None = None) -> None:
        self.trunk = trunk
        self.store = FeatureStore((root or cache_root()) / "features" / trunk.cache_id)
        self.rows: dict[str, np.ndarray] = self.store.load()
        self.runner = TrunkRunner(trunk, self.store.directory)
        self.computed = 0  # rows this process computed (a second run computes none)

    def fill(
        self,
        source: Any,
        digests: list[str],
        views: int,
        transforms: Callable[[int], Callable[[Any], Tensor]],
        batch_size: int = 64,
        progress: bool = False,
    ) -> None:
        """Compute and store every missing (item, view) row of ``source``."""
        todo = [
            (i, v)
            for i, digest in enumerate(digests)
            for v in range(views)
            if view_key(digest, v) not in self.rows
        ]
        if not todo:
            return
        starts = range(0, len(todo), batch_size)
        desc = f"tower features ({self.trunk.cache_id.split('-')[0]}, {len(todo)} views)"
        for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
            chunk = todo[start : start + batch_size]
            images = torch.stack(
                [_seeded(transforms(v), source.load(i), digests[i], v) for i, v in chunk]
            )
            rows = self.runner(images)
            keys = [view_key(digests[i], v) for i, v in chunk]
            self.store.add(keys, rows)
            self.rows.update(zip(keys, rows.astype(STORE_DTYPE), strict=True))
            self.computed += len(chunk)


def _seeded(transform: Callable[[Any], Tensor], item: Any, digest: str, view: int) -> Tensor:
    """``transform(item)`` with torch's CPU generator seeded from the item and view
    (view 0, the evaluation transform, draws nothing); the caller's RNG is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed((int(digest[:15], 16) * 31 + view) % 2**63)
        return transform(item)


class CachedViews:
    """Cached trunk outputs of a source's items (kind "feature").

    ``load(i)`` gives item ``i``'s row ``[*cached_shape]`` float32: view 0, or, with
    ``draw=True`` (training), one of its ``views`` drawn from torch's RNG.
    """

    kind = "feature"

    def __init__(self, rows: np.ndarray, draw: bool) -> None:
        self.rows = rows  # [N, V, *cached_shape] float16
        self.draw = draw

    def __len__(self) -> int:
        return self.rows.shape[0]

    @property
    def views(self) -> int:
        return self.rows.shape[1]

    def load(self, index: int) -> np.ndarray:
        view = int(torch.randint(self.views, (1,))) if self.draw and self.views > 1 else 0
        return self.rows[index, view].astype(np.float32)


def tower_cache(model: torch.nn.Module) -> TowerCache | None:
    """The model's feature cache (made on first use and kept on its image encoder),
    or None when its image tower declares no frozen trunk."""
    trunk = frozen_trunk_of(model)
    if trunk is None:
        return None
    encoder = image_encoder_of(model) or model
    cache = getattr(encoder, "feature_cache", None)
    if cache is None:
        cache = TowerCache(trunk)
        encoder.feature_cache = cache
    return cache


def cached_views(
    model: torch.nn.Module,
    source: Any,
    eval_transform: Callable[[Any], Tensor],
    train_transform: Callable[[Any], Tensor] | None = None,
    views: int = 1,
    progress: bool = False,
) -> CachedViews | None:
    """The cached trunk outputs of ``source``'s images, computing the missing ones;
    None when the model has no frozen trunk or the items are not images.

    Args:
        eval_transform: item -> the tower's input (view 0).
        train_transform: the augmenting transform of views ``1..views-1``; None: one view.
        views: views per image (training); the loader then draws one per item.
    """
    cache = tower_cache(model)
    if cache is None or getattr(source, "kind", "image") != "image" or len(source) == 0:
        return None
    views = views if train_transform is not None else 1
    digests = source_digests(source)

    def transform_of(view: int) -> Callable[[Any], Tensor]:
        return eval_transform if view == 0 or train_transform is None else train_transform

    cache.fill(source, digests, views, transform_of, progress=progress)
    rows = np.stack([np.stack([cache.rows[view_key(d, v)] for v in range(views)]) for d in digests])
    return CachedViews(rows, draw=train_transform is not None)
