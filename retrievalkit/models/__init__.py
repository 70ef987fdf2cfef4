"""Encoders, heads and models. Registries: ``IMAGE_ENCODERS``, ``TEXT_ENCODERS``, ``MODELS``.

Importing this package needs only torch: torchvision and sentence_transformers
are imported when a ResNet or MiniLM encoder is built.
"""

from retrievalkit.models import (  # noqa: F401  (register)
    efficientnet,
    image,
    mfsr,
    minilm,
    resnet,
    text,
    textcnn,
)
from retrievalkit.models.caption_decoder import CaptionDecoder
from retrievalkit.models.dual import (
    DualEmbeddings,
    DualEncoder,
    EmbeddingModel,
    build_dual_encoder,
    build_embedding_model,
)
from retrievalkit.models.gan import ImageDiscriminator, ImageGenerator, PairDiscriminator
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
from retrievalkit.models.separation import FeatureSeparation, SeparatedParts

__all__ = [
    "IMAGE_ENCODERS",
    "MODELS",
    "TEXT_ENCODERS",
    "CaptionDecoder",
    "DualEmbeddings",
    "DualEncoder",
    "EmbeddingModel",
    "FeatureSeparation",
    "ImageDiscriminator",
    "ImageGenerator",
    "ModelOutputs",
    "ModelSpec",
    "PairDiscriminator",
    "ProjectionHead",
    "RetrievalModel",
    "SeparatedParts",
    "Tower",
    "build_dual_encoder",
    "build_embedding_model",
    "build_image_encoder",
    "build_model",
    "build_text_encoder",
    "default_model_name",
]
