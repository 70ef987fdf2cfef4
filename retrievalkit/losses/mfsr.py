"""mFSR losses (METHODS.md 2), each a registered term taking named model outputs.
(Over 300 lines on purpose: the four mFSR terms and the GAN health check their image term reports through are one method (METHODS.md 2).)

The semantic loss is VSE++ MH on ``(image.se, text.se)``: the ``vse`` loss with
other inputs, not a class of its own. The others:

- ``mfsr_modality`` :class:`ModalityLoss`: each modality part near its
  modality's batch mean, the two means apart by a margin;
- ``mfsr_specific`` :class:`SpecificLoss`: the specific part dissimilar to the
  semantic part of the same sample, within each modality;
- ``mfsr_caption`` :class:`CaptionReconstructionLoss`: the decoder's
  cross-entropy over the caption's words (padding ignored);
- ``mfsr_image`` :class:`ImageReconstructionLoss`: the generator's GAN loss
  against D1 and D2 (plus an optional pixel L1 term); it owns the two
  discriminators and follows the adversarial-term protocol of
  ``losses/adversarial.py`` (``adversary_parameters`` / ``adversary_loss``),
  with the discriminators' losses as the plain functions
  :func:`d1_loss` and :func:`d2_loss`.

Each class lists the model outputs it takes by default in ``default_inputs``
(argument name -> output name; a recipe's ``inputs:`` overrides them). The article's equations are images we do not
have; the forms below follow its text and are stated exactly in each
docstring (the tests check them against loops written from these statements).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.losses.core import compute_dtype
from retrievalkit.losses.registry import register_loss
from retrievalkit.models.gan import ImageDiscriminator, PairDiscriminator, random_translate


def _check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"{what}: two [B, E] tensors of one shape expected, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


@register_loss("mfsr_modality")
class ModalityLoss(nn.Module):
    """``loss(img_mo [B, E], txt_mo [B, E]) -> scalar``:

    ``mean_i ||v_i - v̄||² + mean_i ||l_i - l̄||² + max(0, margin - ||v̄ - l̄||²)``

    with ``v̄``, ``l̄`` the batch means of the image and text modality parts
    (kept in the graph). The parts are unit vectors, so for two tight clusters
    ``||v̄ - l̄||² = 2 - 2 cos(angle)``: the default margin 1.0 asks for at least
    60 degrees between the two modalities' directions (the article gives no
    value in its text).
    """

    default_inputs: ClassVar[dict[str, str]] = {"img_mo": "image.mo", "txt_mo": "text.mo"}

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, img_mo: Tensor, txt_mo: Tensor) -> Tensor:
        _check_pair(img_mo, txt_mo, "mfsr_modality")
        dtype = compute_dtype(img_mo.dtype)
        img, txt = img_mo.to(dtype), txt_mo.to(dtype)
        img_mean, txt_mean = img.mean(dim=0), txt.mean(dim=0)
        compact = (img - img_mean).pow(2).sum(1).mean() + (txt - txt_mean).pow(2).sum(1).mean()
        apart = (self.margin - (img_mean - txt_mean).pow(2).sum()).clamp(min=0)
        return compact + apart

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@register_loss("mfsr_specific")
class SpecificLoss(nn.Module):
    """``loss(img_se, img_sp, txt_se, txt_sp [B, E]) -> scalar``:

    ``mean_i f(<v_sp_i, v_se_i>) + mean_i f(<l_sp_i, l_se_i>)``, cosines of unit parts.

    ``penalty="square"`` (default): ``f(c) = c²``, zero when the specific part
    is orthogonal to the semantic part (it carries none of its direction).
    ``penalty="linear"``: ``f(c) = c``, the article's "as small as possible"
    read literally; its minimum ``sp = -se`` still encodes the semantics
    (negated), which is why it is not the default.
    """

    default_inputs: ClassVar[dict[str, str]] = {
        "img_se": "image.se",
        "img_sp": "image.sp",
        "txt_se": "text.se",
        "txt_sp": "text.sp",
    }

    def __init__(self, penalty: Literal["square", "linear"] = "square") -> None:
        super().__init__()
        if penalty not in ("square", "linear"):
            raise ValueError(f"penalty must be 'square' or 'linear', got {penalty!r}")
        self.penalty = penalty

    def _one_modality(self, se: Tensor, sp: Tensor) -> Tensor:
        dtype = compute_dtype(se.dtype)
        cos = (se.to(dtype) * sp.to(dtype)).sum(dim=1)
        return (cos.pow(2) if self.penalty == "square" else cos).mean()

    def forward(self, img_se: Tensor, img_sp: Tensor, txt_se: Tensor, txt_sp: Tensor) -> Tensor:
        _check_pair(img_se, img_sp, "mfsr_specific (image)")
        _check_pair(txt_se, txt_sp, "mfsr_specific (text)")
        return self._one_modality(img_se, img_sp) + self._one_modality(txt_se, txt_sp)

    def extra_repr(self) -> str:
        return f"penalty={self.penalty}"


@register_loss("mfsr_caption")
class CaptionReconstructionLoss(nn.Module):
    """``loss(logits [B, T, V], targets [B, T]) -> scalar``: mean cross-entropy over
    the target tokens that are not padding (``pad_id``, 0); a batch with no such
    token gives a zero that stays in the graph."""

    default_inputs: ClassVar[dict[str, str]] = {
        "logits": "decoder.logits",
        "targets": "decoder.targets",
    }

    def __init__(self, pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.dim() != 3 or targets.shape != logits.shape[:2]:
            raise ValueError(
                f"mfsr_caption: logits [B, T, V] and targets [B, T] expected, "
                f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
            )
        keep = targets != self.pad_id
        if not bool(keep.any()):
            return logits.sum() * 0
        flat = logits.to(compute_dtype(logits.dtype))[keep]  # [N, V]
        return F.cross_entropy(flat, targets[keep])


def _real(logits: Tensor) -> Tensor:
    """Mean BCE of logits against label 1 ("real" / "same content"): ``softplus(-z)``."""
    return F.softplus(-logits.to(compute_dtype(logits.dtype))).mean()


def _fake(logits: Tensor) -> Tensor:
    """Mean BCE of logits against label 0: ``softplus(z)``."""
    return F.softplus(logits.to(compute_dtype(logits.dtype))).mean()


def d1_loss(d1: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """D1 (real vs generated): ``mean_i softplus(-D1(x_i)) + mean_i softplus(D1(G_i))``,
    i.e. BCE with real images labelled 1 and generated ones 0. ``fake`` is
    detached: only D1 learns from it."""
    return _real(d1(real)) + _fake(d1(fake.detach()))


def image_spread(images: Tensor) -> float:
    """Mean over pixels of the std across the batch: ``[B, C, H, W] -> float``
    (0 when every image of the batch is the same; ``inf`` for one image)."""
    if images.shape[0] < 2:
        return float("inf")
    return float(images.detach().float().std(dim=0).mean())


@dataclass(frozen=True)
class GanHealth:
    """One discriminator step's view of the GAN: D1's accuracy on real and on
    generated images (logit > 0 means "real") and the batch spread
    (:func:`image_spread`) of the generated and of the real images."""

    d1_real_accuracy: float
    d1_fake_accuracy: float
    fake_spread: float
    real_spread: float

    def collapse_reasons(
        self, max_accuracy: float = 0.99, min_spread_ratio: float = 0.05
    ) -> list[str]:
        """Why the generator looks collapsed (empty if it does not):
        D1 separates real from generated (almost) perfectly, or the generated
        images barely differ across the batch compared with the real ones."""
        reasons = []
        if min(self.d1_real_accuracy, self.d1_fake_accuracy) >= max_accuracy:
            reasons.append(
                f"D1 accuracy pinned at {self.d1_real_accuracy:.0%} real / "
                f"{self.d1_fake_accuracy:.0%} generated"
            )
        if self.fake_spread < min_spread_ratio * self.real_spread:
            reasons.append(
                f"generated images nearly constant across the batch (spread "
                f"{self.fake_spread:.3g} vs {self.real_spread:.3g} for real images)"
            )
        return reasons

    def as_dict(self) -> dict[str, float]:
        return {
            "d1_real_acc": self.d1_real_accuracy,
            "d1_fake_acc": self.d1_fake_accuracy,
            "fake_spread": self.fake_spread,
        }


def mismatched_pairs(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Row ``i`` paired with row ``i + 1`` (cyclic), kept where the two image ids
    differ: ``(rows, partners)`` index tensors (empty for one row or one id)."""
    rows = torch.arange(ids.shape[0], device=ids.device)
    partners = rows.roll(-1)
    keep = ids != ids[partners]
    return rows[keep], partners[keep]


def d2_loss(
    d2: nn.Module,
    real: Tensor,
    fake: Tensor,
    ids: Tensor,
    max_shift: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """D2 (same content?), GAN-CLS's matching-aware loss on image pairs:

    ``mean_i softplus(-D2(x_i, t(x_i))) + (mean_i softplus(D2(x_i, G_i))
    + mean_{i in M} softplus(D2(x_i, x_π(i)))) / 2``

    with ``t`` a random translation by up to ``max_shift`` pixels
    (:func:`~retrievalkit.models.gan.random_translate`; a positive is not a
    pixel copy, so D2 cannot just test equality), ``π(i) = i + 1`` cyclic and
    ``M`` the rows whose partner has another image id. Without such a row the
    generated pairs are the only negatives (weight 1). ``fake`` is detached.
    """
    positive = _real(d2(real, random_translate(real, max_shift, generator)))
    generated = _fake(d2(real, fake.detach()))
    rows, partners = mismatched_pairs(ids)
    if rows.numel() == 0:
        return positive + generated
    mismatched = _fake(d2(real[rows], real[partners]))
    return positive + (generated + mismatched) / 2


@register_loss("mfsr_image")
class ImageReconstructionLoss(nn.Module):
    """``loss(fake [B, C, S, S], real [B, C, S, S]) -> scalar``, the generator's side:

    ``d1_weight * mean_i softplus(-D1(G_i)) + d2_weight * mean_i softplus(-D2(x_i, G_i))
    + pixel_weight * mean |G_i - x_i|``

    (non-saturating GAN losses, DCGAN's choice), with ``G_i`` the image rebuilt
    from ``[v_mo; v_se; v_sp]`` and ``x_i`` the input image, both in [-1, 1].
    A weight of 0 for D1 or D2 removes that discriminator (and its parameters).

    The discriminators are this module's ``d1`` and ``d2``;
    :meth:`adversary_loss` is their loss (:func:`d1_loss` + :func:`d2_loss`)
    on the detached images, stepped by their own optimizer before the
    generator's step.
    """

    default_inputs: ClassVar[dict[str, str]] = {
        "fake": "recon.image",
        "real": "recon.target",
        "ids": "ids",
    }

    def __init__(
        self,
        size: int = 64,
        channels: int = 3,
        base_channels: int = 64,
        max_channels: int = 512,
        d1_weight: float = 1.0,
        d2_weight: float = 1.0,
        pixel_weight: float = 0.0,
        max_shift: int = 4,
    ) -> None:
        super().__init__()
        if min(d1_weight, d2_weight, pixel_weight) < 0:
            raise ValueError("mfsr_image weights must be >= 0")
        if d1_weight == d2_weight == pixel_weight == 0:
            raise ValueError("mfsr_image with all weights 0 trains nothing; remove the term")
        widths = {"base_channels": base_channels, "max_channels": max_channels}
        self.d1 = ImageDiscriminator(size, channels, **widths) if d1_weight > 0 else None
        self.d2 = PairDiscriminator(size, channels, **widths) if d2_weight > 0 else None
        self.d1_weight, self.d2_weight, self.pixel_weight = d1_weight, d2_weight, pixel_weight
        self.max_shift = max_shift
        self.health: GanHealth | None = None  # from the last adversary_loss call

    def adversary_parameters(self) -> Iterator[nn.Parameter]:
        for module in (self.d1, self.d2):
            if module is not None:
                yield from module.parameters()

    def adversary_loss(self, images: tuple[Tensor, ...], ids: Tensor) -> Tensor:
        """D1's and D2's losses (summed) on ``images = (fake, real)``, the generated
        one detached; also records :attr:`health` (D1's accuracies, the batch spreads).
        (The adversarial-term protocol: the term's inputs but the ids, then the ids.)"""
        fake, real = images
        total = fake.new_zeros((), dtype=compute_dtype(fake.dtype))
        fake = fake.detach()
        if self.d1 is not None:
            real_logits, fake_logits = self.d1(real), self.d1(fake)
            total = total + _real(real_logits) + _fake(fake_logits)
            self.health = GanHealth(
                d1_real_accuracy=float((real_logits > 0).float().mean()),
                d1_fake_accuracy=float((fake_logits <= 0).float().mean()),
                fake_spread=image_spread(fake),
                real_spread=image_spread(real),
            )
        if self.d2 is not None:
            total = total + d2_loss(self.d2, real, fake, ids, self.max_shift)
        return total

    def adversary_stats(self) -> dict[str, float]:
        """The last discriminator step's :class:`GanHealth` as floats (empty before one)."""
        return self.health.as_dict() if self.health is not None else {}

    def collapse_reasons(self) -> list[str]:
        """Why the generator looks collapsed at the last discriminator step (or [])."""
        return self.health.collapse_reasons() if self.health is not None else []

    def forward(self, fake: Tensor, real: Tensor, ids: Tensor | None = None) -> Tensor:
        """The generator's loss (``ids`` are for the discriminators' step; unused here)."""
        if fake.shape != real.shape or fake.dim() != 4:
            raise ValueError(
                f"mfsr_image: fake and real images [B, C, S, S] of one shape expected, "
                f"got {tuple(fake.shape)} and {tuple(real.shape)}"
            )
        real = real.detach()
        total = fake.new_zeros((), dtype=compute_dtype(fake.dtype))
        if self.d1 is not None:
            total = total + self.d1_weight * _real(self.d1(fake))
        if self.d2 is not None:
            total = total + self.d2_weight * _real(self.d2(real, fake))
        if self.pixel_weight > 0:
            diff = fake.to(total.dtype) - real.to(total.dtype)
            total = total + self.pixel_weight * diff.abs().mean()
        return total

    def extra_repr(self) -> str:
        return (
            f"d1_weight={self.d1_weight}, d2_weight={self.d2_weight}, "
            f"pixel_weight={self.pixel_weight}, max_shift={self.max_shift}"
        )
