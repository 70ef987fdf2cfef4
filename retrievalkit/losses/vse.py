"""VSE++ hinge losses (Faghri et al. 2018): sum of hinges (SH, "VSE0") and max of
hinges (MH, hardest negative), in both directions.

``S = img @ txt.T`` ``[B, B]``; pair ``(i, i)`` is matched. For image ``i`` the
negatives are captions ``j`` whose image differs (``img_ids[j] != img_ids[i]``),
so two captions of one image in a batch are never negatives of each other
(vsepp#6); with all ids distinct this is vsepp's ``ContrastiveLoss`` exactly.

Computed by :class:`~retrievalkit.losses.hinge.VSEHinge`: one ``B x B`` matrix for
both directions, non-negatives excluded from a sparse list of same-id pairs, and
the gradient in closed form (MH: a gather, ``O(B D)``, no backward matmul; SH:
the two backward matmuls). Values and gradients are those of the formula
(``amax``'s even split over tied maxima included), checked against vsepp's code
and a loop in ``tests/losses/test_vse.py``. A batch of B <= 256 without references
takes :class:`~retrievalkit.losses.hinge_small.SmallVSEHinge` instead: the same
terms in fewer tensor operations (at that size a step is mostly per-call dispatch).
On float32 CPU tensors MH's hardest negatives (small batches) and its gradient
products (every batch), and SH's costs and gradient (small batches), run as one C
loop each (:mod:`~retrievalkit.losses.vse_native`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from retrievalkit.losses.core import check_embeddings, compute_dtype
from retrievalkit.losses.hinge import VSEHinge
from retrievalkit.losses.hinge_small import SmallVSEHinge, use_small_path
from retrievalkit.losses.registry import register_loss


def pairs_with_references(
    img: Tensor,
    txt: Tensor,
    img_ids: Tensor | None,
    ref_img: Tensor | None,
    ref_txt: Tensor | None,
    ref_ids: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check a cross-modal batch and append its references (other ranks, a memory).

    Returns ``(ids [B], all_img [B+M, D], all_txt [B+M, D], all_ids [B+M])``; ``ids``
    is ``arange(B)`` when ``img_ids`` is None, and ``M = 0`` without references.

    Raises:
        ValueError: shapes or dims disagree, or only some references are given.
    """
    ids = torch.arange(img.shape[0], device=img.device) if img_ids is None else img_ids
    check_embeddings(img, ids, "img")
    check_embeddings(txt, ids, "txt")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img dim {img.shape[1]} != txt dim {txt.shape[1]}")
    given = [r is not None for r in (ref_img, ref_txt, ref_ids)]
    if not any(given):
        return ids, img, txt, ids
    if not all(given):
        raise ValueError("ref_img, ref_txt and ref_ids must be given together")
    assert ref_img is not None and ref_txt is not None and ref_ids is not None
    check_embeddings(ref_img, ref_ids, "ref_img")
    check_embeddings(ref_txt, ref_ids, "ref_txt")
    if ref_img.shape[1] != img.shape[1] or ref_txt.shape[1] != img.shape[1]:
        raise ValueError(
            f"references have dims {ref_img.shape[1]}/{ref_txt.shape[1]}, the batch {img.shape[1]}"
        )
    all_img = torch.cat([img, ref_img.to(img.dtype)])
    all_txt = torch.cat([txt, ref_txt.to(txt.dtype)])
    return ids, all_img, all_txt, torch.cat([ids, ref_ids.to(ids.device)])


def is_plain_pair(img: Tensor, txt: Tensor) -> bool:
    """Whether ``img`` and ``txt`` are floating-point tensors of one shape ``[B, D]``:
    all that :func:`pairs_with_references` checks of a batch without ids and
    references (when False, it raises the error that says what is wrong)."""
    return (
        isinstance(img, Tensor)
        and isinstance(txt, Tensor)
        and img.dim() == 2
        and img.shape == txt.shape
        and img.is_floating_point()
        and txt.is_floating_point()
    )


@register_loss("vse")
class VSELoss(nn.Module):
    """``loss(img [B, D], txt [B, D], img_ids=None) -> scalar``.

    Args:
        margin: hinge margin ``a`` (0.2 in VSE++).
        max_violation: True = MH (VSE++), False = SH (VSE0).
        reduction: "sum" over the batch (as vsepp) or "mean" (sum / B).
    """

    default_inputs: ClassVar[dict[str, str]] = {"img": "image", "txt": "text", "img_ids": "ids"}
    accepts_references: bool = True  # ref_img / ref_txt / ref_ids (memory, other ranks)

    def __init__(
        self,
        margin: float = 0.2,
        max_violation: bool = True,
        reduction: Literal["sum", "mean"] = "sum",
    ) -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.margin, self.max_violation, self.reduction = margin, max_violation, reduction

    def forward(
        self,
        img: Tensor,
        txt: Tensor,
        img_ids: Tensor | None = None,
        ref_img: Tensor | None = None,
        ref_txt: Tensor | None = None,
        ref_ids: Tensor | None = None,
    ) -> Tensor:
        """``img [B, D]`` and ``txt [B, D]`` (row ``i`` of each is a matched pair)
        -> scalar. Optional references ``ref_img [M, D]``, ``ref_txt [M, D]``,
        ``ref_ids [M]`` (other ranks' pairs, a memory) add columns: the batch's
        images are ranked against ``[txt; ref_txt]`` and its captions against
        ``[img; ref_img]``; a reference with the query's id is never a negative.
        The reduction counts the batch's rows only (``mean`` divides by B)."""
        given = (img_ids, ref_img, ref_txt, ref_ids)
        # a plain pair is all that pairs_with_references checks of a batch without ids
        # and references: its ids (arange) are built only where the blocked path uses them
        plain = all(t is None for t in given) and is_plain_pair(img, txt)
        if not plain:
            ids, _, _, all_ids = pairs_with_references(img, txt, *given)
        dtype = compute_dtype(img.dtype)
        img, txt = (x if x.dtype == dtype else x.to(dtype) for x in (img, txt))
        if ref_img is None and use_small_path(img.shape[0]):
            total = SmallVSEHinge.apply(img, txt, img_ids, self.margin, self.max_violation)
        else:
            if plain:
                ids, _, _, all_ids = pairs_with_references(img, txt, None, None, None, None)
            distinct = img_ids is None and ref_ids is None  # only the diagonal is excluded
            refs = [None if r is None else r.to(dtype) for r in (ref_img, ref_txt)]
            total = VSEHinge.apply(
                img,
                txt,
                *refs,
                None if distinct else ids,
                all_ids,
                self.margin,
                self.max_violation,
            )
        return total / img.shape[0] if self.reduction == "mean" else total

    def collapsed_value(self, batch_size: int) -> float | None:
        """The MH loss when every hardest negative ties its positive (all
        similarities equal, vsepp#27): ``2 B margin`` (sum) or ``2 margin`` (mean);
        ``None`` for SH, whose value at collapse depends on the ids."""
        if not self.max_violation:
            return None
        per_query = 2.0 * self.margin
        return per_query if self.reduction == "mean" else per_query * batch_size

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, max_violation={self.max_violation}, reduction={self.reduction}"
        )
