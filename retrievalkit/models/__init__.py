"""Encoders, heads and models. Registries: ``IMAGE_ENCODERS``, ``TEXT_ENCODERS``."""

from retrievalkit.models import image, text  # noqa: F401  (register encoders)
from retrievalkit.models.dual import (
    DualEmbeddings,
    DualEncoder,
    EmbeddingModel,
    build_dual_encoder,
    build_embedding_model,
)
from retrievalkit.models.heads import ProjectionHead
from retrievalkit.models.registry import (
    IMAGE_ENCODERS,
    TEXT_ENCODERS,
    build_image_encoder,
    build_text_encoder,
)

__all__ = [
    "IMAGE_ENCODERS",
    "TEXT_ENCODERS",
    "DualEmbeddings",
    "DualEncoder",
    "EmbeddingModel",
    "ProjectionHead",
    "build_dual_encoder",
    "build_embedding_model",
    "build_image_encoder",
    "build_text_encoder",
]
