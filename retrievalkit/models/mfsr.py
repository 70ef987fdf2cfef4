"""The mFSR model (METHODS.md 2): encoders, feature separation, image and caption
reconstruction, with named outputs.

``forward(images, captions)`` returns a dict of tensors:

========================  =====================  ==========================================
name                      shape                  what
========================  =====================  ==========================================
``image.mo/se/sp``        ``[B, E]``             the image's three unit parts
``text.mo/se/sp``         ``[B, E]``             the caption's three unit parts
``image``, ``text``       ``[B, E]``             the retrieval embeddings (= the ``se`` parts)
``recon.image``           ``[B, C, S, S]``       G's image from ``[v_mo; v_se; v_sp]``, in [-1, 1]
``recon.target``          ``[B, C, S, S]``       the input image in [-1, 1], detached,
                                                 area-resized to S if the input is larger
``decoder.logits``        ``[B, T, V]``          caption decoder, teacher forcing
``decoder.targets``       ``[B, T]``             the words it should predict (0 = padding)
========================  =====================  ==========================================

The ``recon.*`` outputs exist only with a generator, the ``decoder.*`` ones only
with a decoder: switching a reconstruction off removes its parameters. The
retrieval embedding of each side is its semantic part (``RETRIEVAL``), also
what ``encode_image`` / ``encode_text`` return, so evaluation, indexing and
serving use ``se`` with no special case. Registered as model ``"mfsr"``.

The discriminators are not part of the model: they belong to the image
reconstruction loss (``losses/mfsr.py``), which trains them with their own
optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.models.caption_decoder import CaptionDecoder, teacher_forcing
from retrievalkit.models.gan import ImageGenerator, to_pixel_range
from retrievalkit.models.heads import HeadSpec, make_head
from retrievalkit.models.outputs import ModelOutputs, RetrievalModel
from retrievalkit.models.registry import (
    MODELS,
    ModelSpec,
    build_image_encoder,
    build_text_encoder,
)
from retrievalkit.models.separation import PARTS, FeatureSeparation, SeparatedParts
from retrievalkit.models.tower import image_input_of


class MFSRModel(RetrievalModel):
    """Encoders -> heads (the article's FC1) -> separation -> reconstructions.

    Args:
        image_encoder, text_encoder: any registered encoders (``out_dim`` attribute).
        joint_dim: size ``d`` of the features ``v`` and ``l`` (3072 in the article).
        part_dim: size ``E`` of each part (default ``joint_dim``).
        image_head, text_head: heads from the encoders to ``joint_dim`` (``"identity"``
            when the encoder already gives ``joint_dim``, as the article's GRU does).
        separation_head: the kind of each of the six part heads.
        generator: :class:`ImageGenerator` options (``size``, ``channels``,
            ``base_channels``, ``max_channels``), or None for no image reconstruction.
        decoder: :class:`CaptionDecoder` options (``word_dim``, ``hidden_dim``,
            ``num_layers``), or None for no caption reconstruction; needs ``vocab``.
        vocab: the caption vocabulary (``encode_batch``, ``decode``, ``len``).
        recon_grad_scale: how strongly the reconstruction losses' gradients reach
            the parts, the heads and the encoders (1 = fully, 0 = not at all).
        pixel_mean, pixel_std: the normalization of the input images, undone for
            ``recon.target``.
    """

    inputs = ("images", "captions")
    retrieval = {"image": "image.se", "text": "text.se"}  # noqa: RUF012

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        joint_dim: int,
        part_dim: int | None = None,
        image_head: HeadSpec = "linear",
        text_head: HeadSpec = "linear",
        separation_head: HeadSpec = "linear",
        generator: dict[str, Any] | None = None,
        decoder: dict[str, Any] | None = None,
        vocab: Any | None = None,
        recon_grad_scale: float = 1.0,
        pixel_mean: Sequence[float] = (0.485, 0.456, 0.406),
        pixel_std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        part_dim = part_dim or joint_dim
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_head = make_head(image_encoder.out_dim, joint_dim, image_head)
        self.text_head = make_head(text_encoder.out_dim, joint_dim, text_head)
        self.image_separation = FeatureSeparation(joint_dim, part_dim, separation_head)
        self.text_separation = FeatureSeparation(joint_dim, part_dim, separation_head)
        code_dim = len(PARTS) * part_dim
        self.generator = ImageGenerator(code_dim, **generator) if generator is not None else None
        if decoder is not None and vocab is None:
            raise ValueError("mFSR caption reconstruction needs the vocabulary (vocab=...)")
        self.decoder = (
            CaptionDecoder(code_dim, len(vocab), **decoder) if decoder is not None else None
        )
        self.vocab = vocab
        self.recon_grad_scale = float(recon_grad_scale)
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.joint_dim, self.embed_dim = joint_dim, part_dim
        names = [f"{side}.{p}" for side in ("image", "text") for p in PARTS]
        names += ["image", "text"]
        if self.generator is not None:
            names += ["recon.image", "recon.target"]
        if self.decoder is not None:
            names += ["decoder.logits", "decoder.targets"]
        self.output_names = tuple(names)

    def image_parts(self, images: Tensor) -> SeparatedParts:
        """``[B, C, H, W]`` (or features ``[B, F]``) -> the image's three parts."""
        return self.image_separation(self.image_head(self.image_encoder(images)))

    def text_parts(self, captions: Sequence[str]) -> SeparatedParts:
        """B captions -> the caption's three parts."""
        return self.text_separation(self.text_head(self.text_encoder(list(captions))))

    def encode_image(self, images: Tensor) -> Tensor:
        """The retrieval embedding: the semantic part ``[B, E]`` (unit norm)."""
        return self.image_parts(images).se

    def encode_text(self, captions: Sequence[str]) -> Tensor:
        """The retrieval embedding: the semantic part ``[B, E]`` (unit norm)."""
        return self.text_parts(captions).se

    def forward(
        self, images: Tensor | None = None, captions: Sequence[str] | None = None
    ) -> ModelOutputs:
        """The named outputs of the table in the module docstring, for the sides given."""
        out = ModelOutputs()
        if images is not None:
            image = self.image_parts(images)
            out.update({f"image.{p}": getattr(image, p) for p in PARTS}, image=image.se)
            if self.generator is not None:
                out["recon.image"] = self.generator(image.code(self.recon_grad_scale))
                out["recon.target"] = self.reconstruction_target(images)
        if captions is not None:
            text = self.text_parts(captions)
            out.update({f"text.{p}": getattr(text, p) for p in PARTS}, text=text.se)
            if self.decoder is not None:
                ids, _ = self.vocab.encode_batch(list(captions))
                inputs, targets = teacher_forcing(ids.to(text.se.device))
                out["decoder.logits"] = self.decoder(text.code(self.recon_grad_scale), inputs)
                out["decoder.targets"] = targets
        return out

    def reconstruction_target(self, images: Tensor) -> Tensor:
        """Input images ``[B, C, H, W]`` -> what G should rebuild: pixels in [-1, 1] at
        the generator's size (area-averaged down when ``H, W`` are larger, so a
        32-pixel generator can rebuild 64-pixel inputs at a quarter of the cost)."""
        assert self.generator is not None
        pixels = to_pixel_range(images, self.pixel_mean, self.pixel_std)
        size = self.generator.size
        if pixels.shape[-2:] == (size, size):
            return pixels
        if min(pixels.shape[-2:]) < size:
            raise ValueError(
                f"the generator's size {size} is larger than the input images "
                f"{tuple(pixels.shape[-2:])}; use a size up to the input's"
            )
        return F.adaptive_avg_pool2d(pixels, size)

    def decode_captions(self, captions: Sequence[str], max_len: int = 20) -> list[str]:
        """Greedy reconstructions of ``captions`` from their own parts (inspection)."""
        if self.decoder is None:
            raise ValueError("this mFSR model has no caption decoder")
        return self.decoder.decode_strings(self.text_parts(captions).code(), self.vocab, max_len)

    def reconstruct_images(self, images: Tensor) -> Tensor:
        """Images rebuilt from their own parts, in [-1, 1] (inspection)."""
        if self.generator is None:
            raise ValueError("this mFSR model has no image generator")
        return self.generator(self.image_parts(images).code())


def _encoder(spec: dict[str, Any], what: str) -> tuple[str, HeadSpec, dict[str, Any]]:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"mfsr: the {what} encoder needs a 'name', got {spec!r}")
    options = dict(spec)
    return options.pop("name"), options.pop("head", "linear"), options


@MODELS.register("mfsr")
def build_mfsr(spec: ModelSpec) -> MFSRModel:
    """From a recipe: ``model.image`` / ``model.text`` encoders (with their ``head``,
    the article's FC1), ``model.embed_dim`` = the part size ``E`` (the retrieval
    embedding), and ``model.options``: ``joint_dim`` (``d``, default ``embed_dim``),
    ``separation_head``, ``generator`` / ``decoder`` (option dicts, or null to
    switch a reconstruction off), ``recon_grad_scale``, ``pixel_mean`` /
    ``pixel_std`` (default: the data's normalization, ImageNet's for RGB and
    0.5 / 0.5 for greyscale, as ``data/transforms.py`` applies).
    """
    if spec.text is None:
        raise ValueError("model 'mfsr' needs a text encoder (model.text)")
    options = dict(spec.options)
    image_name, image_head, image_options = _encoder(spec.image, "image")
    text_name, text_head, text_options = _encoder(spec.text, "text")
    image_encoder = build_image_encoder(image_name, **image_options)
    generator = options.get("generator")
    if generator is not None and "pixel_mean" not in options:
        declared = image_input_of(image_encoder)  # the normalization its input has
        grey = generator.get("channels", 3) == 1
        options["pixel_mean"] = (0.5,) if grey else declared.mean
        options["pixel_std"] = (0.5,) if grey else declared.std
    joint_dim = options.pop("joint_dim", spec.embed_dim)
    return MFSRModel(
        image_encoder,
        build_text_encoder(text_name, vocab=spec.vocab, **text_options),
        joint_dim=joint_dim,
        part_dim=spec.embed_dim,
        image_head=image_head,
        text_head=text_head,
        vocab=spec.vocab,
        **options,
    )
