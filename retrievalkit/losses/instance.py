"""Instance loss (Zheng et al., dual-path image-text embedding): every training
image with its captions is its own class; ONE classifier ``W`` is shared by both
modalities, so both are pulled to the same class centre::

    L = CE(scale * W img, id) + CE(scale * W txt, id)

``W`` has parameters: the trainer adds them to the optimizer and saves them with
the checkpoint (``loss.*``). If you use the loss in your own loop, pass
``loss.parameters()`` to your optimizer too.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.losses.core import check_embeddings, compute_dtype
from retrievalkit.losses.registry import register_loss


@register_loss("instance")
class InstanceLoss(nn.Module):
    """``loss(img [B, D], txt [B, D], instance_ids [B]) -> scalar``.

    Args:
        num_instances: number of classes (training images); filled in by the trainer.
        dim: embedding size; filled in by the trainer.
        scale: logit scale for L2-normalized embeddings (1 = plain logits).
    """

    default_inputs: ClassVar[dict[str, str]] = {
        "img": "image",
        "txt": "text",
        "instance_ids": "ids",
    }

    def __init__(self, num_instances: int, dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_instances)
        self.num_instances, self.scale = num_instances, scale

    def forward(self, img: Tensor, txt: Tensor, instance_ids: Tensor) -> Tensor:
        check_embeddings(img, instance_ids, "img")
        check_embeddings(txt, instance_ids, "txt")
        if instance_ids.numel() and (
            instance_ids.min() < 0 or instance_ids.max() >= self.num_instances
        ):
            raise ValueError(
                f"instance ids must be in [0, {self.num_instances}), got "
                f"{int(instance_ids.min())}..{int(instance_ids.max())}"
            )
        dtype = compute_dtype(img.dtype)
        weight, bias = self.classifier.weight.to(dtype), self.classifier.bias.to(dtype)
        img_logits = self.scale * F.linear(img.to(dtype), weight, bias)
        txt_logits = self.scale * F.linear(txt.to(dtype), weight, bias)
        return F.cross_entropy(img_logits, instance_ids) + F.cross_entropy(txt_logits, instance_ids)

    def extra_repr(self) -> str:
        return f"num_instances={self.num_instances}, scale={self.scale}"
