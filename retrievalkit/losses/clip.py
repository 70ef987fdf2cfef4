"""CLIP's symmetric InfoNCE loss (Radford et al. 2021) with a learnable temperature.

``S = img @ txt.T`` ``[B, B]`` (L2-normalized rows), logits ``s * S`` with the
logit scale ``s = exp(t)``; ``t`` is a parameter initialised to ``log(1 / 0.07)``
and kept in ``[0, log 100]`` as open_clip does (open_clip clamps the parameter in
place after every optimizer step; here it is clamped in place at the start of the
next call, so every call sees the same value as in open_clip). The loss is

    (mean_i CE(s * S[i, :], i) + mean_j CE(s * S[:, j], j)) / 2,

image -> text over the rows and text -> image over the columns.

Several captions of one image (equal ``img_ids``): for query ``i`` the other
captions (or images) with its id are not negatives, so they are left out of its
softmax (their logits are ``-inf``); the target stays its own matched column
``i``. A caption therefore never pushes away a sibling caption, and with all ids
distinct this is open_clip's ``ClipLoss`` exactly. (The alternative, a target
spread over all positives as in SupCon, would change the loss for the common
single-caption case; leaving siblings out matches :class:`VSELoss`'s "not a
negative".)

References (other ranks' pairs from ``DistributedVSELoss``, a
``CrossModalMemory``) add columns exactly as in :class:`VSELoss`: the batch's
images are scored against ``[txt; ref_txt]`` and its captions against
``[img; ref_img]``; a reference with the query's id is left out. The mean is over
the batch's rows only, so with gathered references the mean of the ranks' losses
is the full-batch loss (see ``losses/distributed.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from retrievalkit.losses.core import same_label_mask, similarity_matrix
from retrievalkit.losses.registry import register_loss
from retrievalkit.losses.vse import pairs_with_references

MAX_LOG_SCALE = math.log(100.0)  # open_clip: "clamp to 4.6052 = ln(100), as in the original paper"


def _softmax_(logits: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``softmax(logits, dim)`` written into ``logits`` and the log-probabilities of
    the diagonal entries ``[B]`` (taken before the exponent, so they do not underflow)."""
    target = logits.diagonal().clone()
    top = logits.amax(dim=dim, keepdim=True)
    probs = logits.sub_(top).exp_()
    total = probs.sum(dim=dim, keepdim=True)
    log_target = target - top.squeeze(dim) - total.squeeze(dim).log()
    return probs.div_(total), log_target


class _InfoNCE(torch.autograd.Function):
    """``sum over dims of mean_q CE(scale * sim, q -> q)``, its gradient made in the forward.

    ``sim [B, R]`` (``R >= B``; entry ``(q, q)`` is query ``q``'s target), ``scale``
    a 0-d tensor, ``excluded`` bool ``[B, R]`` or None (entries left out of every
    softmax), ``dims``: ``(1,)`` (queries are rows) or ``(1, 0)`` (square ``sim``,
    rows and columns both queries: CLIP's two directions on one matrix).

    The gradient w.r.t. the logits is ``sum_dims softmax(logits, dim) - dims * I``
    over ``B``; it is built in place from the log-softmaxes while they are at hand,
    so the backward is one scaling and only one ``[B, R]`` matrix outlives the
    forward (autograd's version keeps the logits, both log-softmaxes and makes two
    softmaxes again).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, sim: Tensor, scale: Tensor, excluded: Tensor | None, dims: tuple[int, ...]
    ) -> Tensor:
        num_queries = sim.shape[0]
        logits = sim * scale
        if excluded is not None:
            logits.masked_fill_(excluded, float("-inf"))
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        total = sim.new_zeros(())
        grad: Tensor | None = None
        for k, dim in enumerate(dims):
            if k == len(dims) - 1:  # the last pass may overwrite the logits
                probs, log_target = _softmax_(logits, dim)
                total -= log_target.sum() / num_queries
            else:
                log_p = torch.log_softmax(logits, dim=dim)
                total -= log_p.diagonal().sum() / num_queries
                probs = log_p.exp_()
            if want_grad:
                grad = probs if grad is None else grad.add_(probs)
        del logits, probs
        if grad is not None:
            grad.diagonal().sub_(len(dims))
            grad.div_(num_queries)
            ctx.grad_scale = grad.reshape(-1) @ sim.reshape(-1)  # d total / d scale
            ctx.scale = scale.detach()
            ctx.save_for_backward(grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * (grad_out * ctx.scale), grad_out * ctx.grad_scale, None, None


@register_loss("clip")
class ClipLoss(nn.Module):
    """``loss(img [B, D], txt [B, D], img_ids=None) -> scalar`` (see the module docstring).

    Args:
        temperature: initial temperature ``1 / s`` (0.07 in CLIP).
        learn_temperature: learn ``log s`` (a parameter; else a fixed buffer).
        max_scale: upper clamp of ``s`` (100 in CLIP and open_clip); the lower is 1.
    """

    accepts_references: bool = True
    default_inputs: ClassVar[dict[str, str]] = {"img": "image", "txt": "text", "img_ids": "ids"}

    def __init__(
        self, temperature: float = 0.07, learn_temperature: bool = True, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        if not 0 < temperature <= 1:
            raise ValueError(f"temperature must be in (0, 1], got {temperature}")
        if max_scale < 1 / temperature:
            raise ValueError(f"max_scale {max_scale} is below the initial scale {1 / temperature}")
        self.max_log_scale = math.log(max_scale)
        initial = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(initial)
        else:
            self.register_buffer("log_scale", initial)

    @property
    def logit_scale(self) -> float:
        """The current ``s = exp(log_scale)`` (clamped)."""
        return math.exp(min(max(float(self.log_scale.detach()), 0.0), self.max_log_scale))

    def _clamped_scale(self) -> Tensor:
        """``exp(log_scale)`` after putting ``log_scale`` back into ``[0, log max_scale]``.

        In place and only when it left the range (an optimizer step moved it), so a
        graph built by an earlier call of the same step is never invalidated."""
        value = float(self.log_scale.detach())
        if not 0.0 <= value <= self.max_log_scale:
            with torch.no_grad():
                self.log_scale.clamp_(0.0, self.max_log_scale)
        return self.log_scale.exp()

    def forward(
        self,
        img: Tensor,
        txt: Tensor,
        img_ids: Tensor | None = None,
        ref_img: Tensor | None = None,
        ref_txt: Tensor | None = None,
        ref_ids: Tensor | None = None,
    ) -> Tensor:
        """``img [B, D]``, ``txt [B, D]`` (row ``i`` of each a matched pair), optional
        ``img_ids [B]`` and references ``ref_img [M, D]``, ``ref_txt [M, D]``,
        ``ref_ids [M]`` -> scalar (float32, or float64 for float64 inputs)."""
        ids, all_img, all_txt, all_ids = pairs_with_references(
            img, txt, img_ids, ref_img, ref_txt, ref_ids
        )
        excluded = None
        if img_ids is not None or all_ids is not ids:
            excluded = same_label_mask(ids, all_ids)  # [B, B + M]
            rows = torch.arange(img.shape[0], device=img.device)
            excluded[rows, rows] = False  # the matched pair stays
        sim_i2t = similarity_matrix(img, all_txt)
        scale = self._clamped_scale().to(sim_i2t.dtype)
        if all_img is img:  # square: text -> image are the columns (the mask is symmetric)
            return _InfoNCE.apply(sim_i2t, scale, excluded, (1, 0)) / 2
        sim_t2i = similarity_matrix(txt, all_img)
        i2t = _InfoNCE.apply(sim_i2t, scale, excluded, (1,))
        return (i2t + _InfoNCE.apply(sim_t2i, scale, excluded, (1,))) / 2

    def extra_repr(self) -> str:
        learned = isinstance(self.log_scale, nn.Parameter)
        top = math.exp(self.max_log_scale)
        return f"logit_scale={self.logit_scale:.3g}, learned={learned}, max_scale={top:.3g}"


register_loss("infonce")(ClipLoss)  # the name used in the contrastive-learning literature
