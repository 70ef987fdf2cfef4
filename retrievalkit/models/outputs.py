"""The model contract: named outputs, declared retrieval embeddings, towers.

Every registered model is a :class:`RetrievalModel`:

- ``forward(images=..., captions=...)`` returns :class:`ModelOutputs`, a mapping
  of named tensors (``"image"``, ``"text"``, ``"embedding"``, ``"image.se"``,
  ``"recon.image"``, ``"decoder.logits"``, ...). ``output_names`` lists what it
  can produce, so a recipe that asks for something else fails before training.
- ``retrieval`` maps each side the model can be searched from (``"image"``,
  ``"text"``) to the output that is its retrieval embedding;
  ``encode_image`` / ``encode_text`` return exactly those, L2-normalized.
  Evaluation, ``embed``, ``index``, ``search``, ``serve`` and ``export`` use only
  these two methods and ``has_text``: nothing else needs to know the model.
- ``inputs`` names the batch fields ``forward`` takes (``"images"``,
  ``"captions"``): a model with captions is trained on image-caption pairs, one
  without on labelled images.
- ``text_token_tower()`` (optional) gives the text side from token tensors, for
  ONNX export.
- ``towers()`` (optional) lists the per-input encoders whose outputs are the
  retrieval embeddings, for gradient caching; a model with other outputs
  (reconstructions, decoders) returns ``None`` and cannot be gradient-cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn


class ModelOutputs(dict[str, Tensor]):
    """Named output tensors of one forward pass; ``outputs.image`` reads ``outputs["image"]``
    for names that are identifiers."""

    def __getattr__(self, name: str) -> Tensor:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no output {name!r}; outputs: {sorted(self)}") from None


@dataclass(frozen=True)
class Tower:
    """One encoder of a model: batch field ``input`` -> output ``output`` ``[B, E]``."""

    output: str
    input: str
    encode: Callable[[Any], Tensor]


class RetrievalModel(nn.Module):
    """Base class of the registered models (see the module docstring).

    Subclasses set ``inputs``, ``output_names`` and ``retrieval`` and implement
    ``forward``; ``encode_image`` / ``encode_text`` default to running ``forward``
    on one side and reading the declared output, which models override when one
    side can be encoded alone more cheaply (they all can).
    """

    inputs: tuple[str, ...] = ("images",)
    output_names: tuple[str, ...] = ()
    retrieval: dict[str, str] = {}  # noqa: RUF012  (overridden per instance/class, never mutated)

    @property
    def has_text(self) -> bool:
        """Whether the model embeds text queries (cross-modal) or only images."""
        return "text" in self.retrieval

    def towers(self) -> list[Tower] | None:
        """The per-input encoders, for gradient caching; None when not separable."""
        return None

    def text_token_tower(self) -> nn.Module | None:
        """For ONNX export: a module from the text encoder's token tensors (its
        ``tokenize`` output, also offered as the module's ``tokenize``) to the text
        retrieval embedding; None when the text side has no token-level forward."""
        return None

    def encode_image(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[B, F]`` -> the retrieval embedding ``[B, E]``."""
        return self(images=images)[self.retrieval["image"]]

    def encode_text(self, captions: list[str]) -> Tensor:
        """B captions -> the retrieval embedding ``[B, E]``."""
        if not self.has_text:
            raise ValueError(f"{type(self).__name__} embeds images only: no text queries")
        return self(captions=list(captions))[self.retrieval["text"]]
