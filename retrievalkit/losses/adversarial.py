"""Adversarial loss terms: a loss with its own adversary, optimized separately.

An adversarial term is a loss module with two extra methods:

- ``adversary_parameters()``: the adversary's parameters (a discriminator). The
  trainer gives them their OWN optimizer and leaves them out of the main one;
- ``adversary_loss(outputs, ids)``: the adversary's loss on the DETACHED outputs
  of the encoders (the trainer calls it first and steps the adversary), while the
  module's ``forward`` is the encoders' loss against the adversary (stepped with
  the main optimizer).

So a step is: adversary step on the current embeddings, then the encoders' step
against the updated adversary (the usual alternating GAN schedule). The
adversary's optimizer state is checkpointed with the others. mFSR's two image
discriminators are meant to follow the same protocol.

:class:`ModalityAdversarialLoss` is the modality classifier of adversarial
cross-modal retrieval (ACMR, Wang et al. 2017): a small MLP tells image from
text embeddings; the encoders are trained to make it fail (labels flipped), which
pulls the two modalities' distributions together in the joint space.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.losses.core import check_embeddings
from retrievalkit.losses.registry import register_loss


def is_adversarial(module: nn.Module) -> bool:
    """Whether ``module`` follows the adversarial-term protocol."""
    return callable(getattr(module, "adversary_parameters", None)) and callable(
        getattr(module, "adversary_loss", None)
    )


@register_loss("modality_adversarial")
class ModalityAdversarialLoss(nn.Module):
    """``loss(img [B, D], txt [B, D], ids [B]) -> scalar``: the encoders' loss, i.e.
    the modality discriminator's cross-entropy with the labels flipped.

    Args:
        dim: embedding size (filled in by the trainer).
        hidden: width of the discriminator's hidden layer.
    """

    default_inputs: ClassVar[dict[str, str]] = {"img": "image", "txt": "text", "ids": "ids"}

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.discriminator = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def adversary_parameters(self) -> Iterator[nn.Parameter]:
        return self.discriminator.parameters()

    def _cross_entropy(self, img: Tensor, txt: Tensor, image_label: float) -> Tensor:
        """Mean BCE of "is an image" with images labelled ``image_label``, captions the other."""
        logits = self.discriminator(torch.cat([img, txt]).float()).squeeze(1)
        target = torch.cat(
            [
                logits.new_full((img.shape[0],), image_label),
                logits.new_full((txt.shape[0],), 1 - image_label),
            ]
        )
        return F.binary_cross_entropy_with_logits(logits, target)

    def adversary_loss(self, outputs: tuple[Tensor, ...], ids: Tensor) -> Tensor:
        """The discriminator's loss on detached ``(img, txt)``: images 1, captions 0."""
        img, txt = (o.detach() for o in outputs)
        return self._cross_entropy(img, txt, image_label=1.0)

    def forward(self, img: Tensor, txt: Tensor, ids: Tensor | None = None) -> Tensor:
        labels = ids if ids is not None else torch.arange(img.shape[0], device=img.device)
        check_embeddings(img, labels, "img")
        check_embeddings(txt, labels, "txt")
        return self._cross_entropy(img, txt, image_label=0.0)  # fool it: labels flipped
