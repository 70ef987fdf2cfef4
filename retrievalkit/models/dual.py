"""Models: ``DualEncoder`` (image <-> text) and ``EmbeddingModel`` (metric learning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.models.heads import HeadSpec, make_head
from retrievalkit.models.registry import build_image_encoder, build_text_encoder


@dataclass(frozen=True)
class DualEmbeddings:
    """L2-normalized ``image [B, E]`` and ``text [B, E]`` embeddings."""

    image: Tensor
    text: Tensor


class DualEncoder(nn.Module):
    """Image and text encoders, each with a head into a shared ``embed_dim`` space.

    Heads are a kind (``"linear"`` with vsepp's Xavier init, ``"mlp"``,
    ``"identity"``) or a dict of :func:`make_head` options.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        embed_dim: int,
        image_head: HeadSpec = "linear",
        text_head: HeadSpec = "linear",
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_head = make_head(image_encoder.out_dim, embed_dim, image_head)
        self.text_head = make_head(text_encoder.out_dim, embed_dim, text_head)
        self.embed_dim = embed_dim

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        """``[B, C, H, W]`` or ``[B, F]`` -> ``[B, E]``."""
        out = self.image_head(self.image_encoder(images))
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, captions: list[str], normalize: bool = True) -> Tensor:
        """B captions -> ``[B, E]``."""
        out = self.text_head(self.text_encoder(list(captions)))
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, images: Tensor, captions: list[str]) -> DualEmbeddings:
        """Both sides, L2-normalized: ``image [B, E]``, ``text [B', E]``."""
        return DualEmbeddings(self.encode_image(images), self.encode_text(captions))


class EmbeddingModel(nn.Module):
    """An image encoder with a head: ``encode(images) -> [B, E]`` (metric learning)."""

    def __init__(self, encoder: nn.Module, embed_dim: int, head: HeadSpec = "linear") -> None:
        super().__init__()
        self.encoder = encoder
        self.head = make_head(encoder.out_dim, embed_dim, head)
        self.embed_dim = embed_dim

    def encode(self, images: Tensor, normalize: bool = True) -> Tensor:
        """``[B, C, H, W]`` or ``[B, F]`` -> ``[B, E]``."""
        out = self.head(self.encoder(images))
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, images: Tensor) -> Tensor:
        return self.encode(images)


def _split_options(spec: dict[str, Any], what: str) -> tuple[str, HeadSpec, dict[str, Any]]:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{what} encoder options need a 'name', got {spec!r}")
    options = dict(spec)
    name = options.pop("name")
    head = options.pop("head", "linear")
    return name, head, options


def build_dual_encoder(
    image: dict[str, Any], text: dict[str, Any], embed_dim: int, vocab: Any | None = None
) -> DualEncoder:
    """From recipe dicts ``{"name": ..., "head": "linear"|"mlp"|{...}, **options}``.

    Options other than ``name`` and ``head`` go to the encoder; an unknown one
    raises a ``TypeError`` naming the encoder and the option.
    """
    image_name, image_head, image_options = _split_options(image, "image")
    text_name, text_head, text_options = _split_options(text, "text")
    return DualEncoder(
        build_image_encoder(image_name, **image_options),
        build_text_encoder(text_name, vocab=vocab, **text_options),
        embed_dim,
        image_head=image_head,
        text_head=text_head,
    )


def build_embedding_model(image: dict[str, Any], embed_dim: int) -> EmbeddingModel:
    """From a recipe dict ``{"name": ..., "head": ..., **options}`` (metric learning)."""
    name, head, options = _split_options(image, "image")
    return EmbeddingModel(build_image_encoder(name, **options), embed_dim, head)
