"""Embed images, captions and labelled splits with a model, in batches, without grad.

One function per input kind; every caller (validation, ``eval``, ``embed``,
``index build``, the service) goes through these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm


def _device_of(model: torch.nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


@torch.no_grad()
def embed_images(
    encode: Callable[[Tensor], Tensor],
    source: Any,
    transform: Callable[[Any], Tensor],
    device: torch.device,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "embed images",
) -> Tensor:
    """Embed every item of an image source: ``N items -> [N, E]`` float32 on CPU.

    Args:
        encode: e.g. ``model.encode_image`` (normalized output).
        source: an ``ImageSource`` (``len`` and ``load(i)``).
        transform: item -> tensor ``[C, H, W]`` or ``[F]``.
    """
    chunks: list[Tensor] = []
    indices = range(len(source))
    starts = range(0, len(source), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        batch = torch.stack(
            [transform(source.load(i)) for i in indices[start : start + batch_size]]
        )
        chunks.append(encode(batch.to(device)).float().cpu())
    if not chunks:
        raise ValueError("cannot embed an empty image source")
    return torch.cat(chunks)


def embed_model_images(
    model: torch.nn.Module,
    source: Any,
    transform: Callable[[Any], Tensor],
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "embed images",
) -> Tensor:
    """``model.encode_image`` over every item of ``source``: ``[N, E]`` float32 on CPU.

    A model whose image tower declares a frozen trunk reads its images' cached trunk
    outputs (``tower_cache.py``: computed once per image, kept on disk) instead of
    running the trunk again; ``transform`` is the tower's input transform.
    """
    from retrievalkit.pipeline.tower_cache import cached_views

    cached = cached_views(model, source, transform, progress=progress)
    if cached is not None:
        source, transform = cached, _as_tensor
    return embed_images(
        model.encode_image, source, transform, model_device(model), batch_size, progress, desc
    )


def _as_tensor(row: Any) -> Tensor:
    return torch.as_tensor(row)


@torch.no_grad()
def embed_captions(
    encode: Callable[[list[str]], Tensor],
    captions: Sequence[str],
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "embed captions",
) -> Tensor:
    """Embed captions: ``M strings -> [M, E]`` float32 on CPU."""
    chunks = [
        encode(list(captions[start : start + batch_size])).float().cpu()
        for start in tqdm(
            range(0, len(captions), batch_size), desc=desc, disable=not progress, leave=False
        )
    ]
    if not chunks:
        raise ValueError("cannot embed an empty caption list")
    return torch.cat(chunks)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (CPU when it has none)."""
    return _device_of(model)
