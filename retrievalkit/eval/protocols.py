"""Named cross-modal protocols: one record per evaluation, stating what was scored.

- ``full``: every test image against every test caption, whatever the sizes.
- ``coco5k``: the same on COCO's 5,000 Karpathy test images (25,000 captions).
- ``coco1k``: mean over 5 folds of 1,000 consecutive test images (vsepp#26).
- ``f30k``: the same as ``full`` on Flickr30K's 1,000 test images.

The named COCO/Flickr30K protocols log a warning when the split does not have the
standard number of images (the scores are then not comparable with the papers),
but still score it, so small test splits work.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from retrievalkit.eval.cross_modal import coco_1k, cross_modal_recall

logger = logging.getLogger(__name__)

PROTOCOLS = ("full", "coco1k", "coco5k", "f30k")
STANDARD_IMAGES = {"coco1k": 5000, "coco5k": 5000, "f30k": 1000}


def evaluate_protocol(
    name: str,
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_to_img: Tensor,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Scores of ``img_emb [N, D]`` / ``txt_emb [M, D]`` under protocol ``name``.

    The record is flat: the keys of ``cross_modal_recall`` (for ``coco1k`` the mean
    over folds, with ``n_images``/``n_captions`` per fold plus ``folds``,
    ``n_captions_per_fold``, ``n_images_total``, ``n_captions_total``) and
    ``protocol``.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use one of {PROTOCOLS}")
    expected = STANDARD_IMAGES.get(name)
    if expected is not None and img_emb.shape[0] != expected:
        logger.warning(
            "protocol %s expects %d test images, got %d: scores are not comparable with "
            "published %s numbers",
            name,
            expected,
            img_emb.shape[0],
            name,
        )
    if name == "coco1k":
        record: dict[str, Any] = dict(coco_1k(img_emb, txt_emb, txt_to_img, 5, chunk_size)[0])
    else:
        record = dict(cross_modal_recall(img_emb, txt_emb, txt_to_img, chunk_size=chunk_size))
    record["protocol"] = name
    return record
