"""mFSR feature separation (METHODS.md 2): one modality's feature -> three parts.

A feature ``v [B, D]`` (image) or ``l [B, D]`` (text) goes through three MLPs,
one per part, each L2-normalized:

- ``mo``: the modality part (what says "this is an image / a caption");
- ``se``: the semantic part (what the pair shares; used for retrieval);
- ``sp``: the specific part (details of this sample the other modality lacks).

``code = [mo; se; sp]`` ``[B, 3E]`` is what the image generator and the caption
decoder rebuild the input from. :func:`scale_gradient` sets how strongly the
reconstruction losses' gradients flow back through the code into the encoders
(a recipe value: 1 = fully, 0 = not at all, the parts are then trained by the
other losses only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.models.heads import HeadSpec, make_head

PARTS = ("mo", "se", "sp")


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` unchanged; its gradient multiplied by ``scale`` on the way back.

    ``scale=1`` is the identity and ``scale=0`` behaves like ``x.detach()`` for
    the gradient (the value still flows forward).
    """
    if scale == 1.0:
        return x
    if scale == 0.0:
        return x.detach()
    return _ScaleGradient.apply(x, float(scale))


@dataclass(frozen=True)
class SeparatedParts:
    """The three L2-normalized parts of a batch, each ``[B, E]``."""

    mo: Tensor
    se: Tensor
    sp: Tensor

    def code(self, grad_scale: float = 1.0) -> Tensor:
        """``[mo; se; sp]`` concatenated: ``[B, 3E]``, its gradient scaled by ``grad_scale``."""
        return scale_gradient(torch.cat([self.mo, self.se, self.sp], dim=1), grad_scale)


class FeatureSeparation(nn.Module):
    """``[B, in_dim] -> SeparatedParts(mo, se, sp)``, each ``[B, part_dim]``, unit norm.

    Each part has its own head (:func:`~retrievalkit.models.heads.make_head`):
    ``"linear"`` (the article's "linear transformation by the MLP's learned
    parameters", the default), ``"mlp"`` (Linear-BN-ReLU-Linear) or a dict of
    head options. The three heads share the spec, not their weights.
    """

    def __init__(self, in_dim: int, part_dim: int, head: HeadSpec = "linear") -> None:
        super().__init__()
        self.heads = nn.ModuleDict({part: make_head(in_dim, part_dim, head) for part in PARTS})
        self.in_dim, self.part_dim = in_dim, part_dim

    def forward(self, features: Tensor) -> SeparatedParts:
        """``features [B, in_dim]`` -> three ``[B, part_dim]`` L2-normalized parts."""
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(
                f"feature separation expects features [B, {self.in_dim}], "
                f"got {tuple(features.shape)}"
            )
        parts = {part: F.normalize(head(features), dim=-1) for part, head in self.heads.items()}
        return SeparatedParts(**parts)
