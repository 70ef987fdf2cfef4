"""Models: ``DualEncoder`` (image <-> text) and ``EmbeddingModel`` (metric learning).

Registered as ``"dual_encoder"`` and ``"embedding"`` (the defaults of a recipe
with and without a text encoder).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.models.heads import HeadSpec, make_head
from retrievalkit.models.outputs import ModelOutputs, RetrievalModel, Tower
from retrievalkit.models.registry import (
    MODELS,
    ModelSpec,
    build_image_encoder,
    build_text_encoder,
)

DualEmbeddings = ModelOutputs  # a DualEncoder's outputs: ``image [B, E]``, ``text [B', E]``


class DualEncoder(RetrievalModel):
    """Image and text encoders, each with a head into a shared ``embed_dim`` space.

    Outputs ``image`` and ``text`` (L2-normalized), which are also its retrieval
    embeddings.

    Heads are a kind (``"linear"`` with vsepp's Xavier init, ``"mlp"``,
    ``"identity"``) or a dict of :func:`make_head` options.
    """

    inputs = ("images", "captions")
    output_names = ("image", "text")
    retrieval = {"image": "image", "text": "text"}  # noqa: RUF012

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

    def forward(
        self, images: Tensor | None = None, captions: list[str] | None = None
    ) -> ModelOutputs:
        """The sides given, L2-normalized: ``image [B, E]``, ``text [B', E]``."""
        outputs = ModelOutputs()
        if images is not None:
            outputs["image"] = self.encode_image(images)
        if captions is not None:
            outputs["text"] = self.encode_text(captions)
        return outputs

    def towers(self) -> list[Tower]:
        return [
            Tower("image", "images", self.encode_image),
            Tower("text", "captions", self.encode_text),
        ]

    def text_token_tower(self) -> nn.Module | None:
        if not hasattr(self.text_encoder, "forward_tokens"):
            return None
        return TokenTower(self.text_encoder, self.text_head)


class TokenTower(nn.Module):
    """Token tensors -> L2-normalized ``[B, E]``: a text encoder's ``forward_tokens``
    then a head (the text tower of a model, as ONNX export traces it)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def tokenize(self, captions: list[str]) -> dict[str, Tensor]:
        """The encoder's token tensors for ``captions`` (``ids`` [, ``lengths``])."""
        return self.encoder.tokenize(captions)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        tokens = (ids,) if lengths is None else (ids, lengths)
        return F.normalize(self.head(self.encoder.forward_tokens(*tokens)), dim=-1)


class EmbeddingModel(RetrievalModel):
    """An image encoder with a head: ``encode(images) -> [B, E]`` (metric learning).

    Output ``embedding`` (L2-normalized), its retrieval embedding for images.
    """

    inputs = ("images",)
    output_names = ("embedding",)
    retrieval = {"image": "embedding"}  # noqa: RUF012

    def __init__(self, encoder: nn.Module, embed_dim: int, head: HeadSpec = "linear") -> None:
        super().__init__()
        self.encoder = encoder
        self.head = make_head(encoder.out_dim, embed_dim, head)
        self.embed_dim = embed_dim

    def encode(self, images: Tensor, normalize: bool = True) -> Tensor:
        """``[B, C, H, W]`` or ``[B, F]`` -> ``[B, E]``."""
        out = self.head(self.encoder(images))
        return F.normalize(out, dim=-1) if normalize else out

    def encode_image(self, images: Tensor) -> Tensor:
        """The retrieval embedding: ``encode(images)``."""
        return self.encode(images)

    def forward(self, images: Tensor) -> ModelOutputs:
        return ModelOutputs(embedding=self.encode(images))

    def towers(self) -> list[Tower]:
        return [Tower("embedding", "images", self.encode)]


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


@MODELS.register("dual_encoder")
def _dual_encoder(spec: ModelSpec) -> DualEncoder:
    if spec.text is None:
        raise ValueError("model 'dual_encoder' needs a text encoder (model.text)")
    return build_dual_encoder(spec.image, spec.text, spec.embed_dim, spec.vocab, **spec.options)


@MODELS.register("embedding")
def _embedding(spec: ModelSpec) -> EmbeddingModel:
    return build_embedding_model(spec.image, spec.embed_dim, **spec.options)
