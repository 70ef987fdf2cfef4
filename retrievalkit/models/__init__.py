"""Encoders, heads and models. Registries: ``IMAGE_ENCODERS``, ``TEXT_ENCODERS``, ``MODELS``.

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
from retrievalkit.models.outputs import ModelOutputs, RetrievalModel, Tower
from retrievalkit.models.registry import (
    IMAGE_ENCODERS,
    MODELS,
    TEXT_ENCODERS,
    ModelSpec,
    build_image_encoder,
    build_model,
    build_text_encoder,
    default_model_name,
)

__all__ = [
    "IMAGE_ENCODERS",
    "MODELS",
    "TEXT_ENCODERS",
    "DualEmbeddings",
    "DualEncoder",
    "EmbeddingModel",
    "ModelOutputs",
    "ModelSpec",
    "ProjectionHead",
    "RetrievalModel",
    "Tower",
    "build_dual_encoder",
    "build_embedding_model",
    "build_image_encoder",
    "build_model",
    "build_text_encoder",
    "default_model_name",
]
