"""Encoders, heads and models. Registries: ``IMAGE_ENCODERS``, ``TEXT_ENCODERS``.

Importing this package needs only torch: torchvision and sentence_transformers
are imported when a ResNet or MiniLM encoder is built.
"""

from retrievalkit.models import image, minilm, resnet, text, textcnn  # noqa: F401  (register)
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
