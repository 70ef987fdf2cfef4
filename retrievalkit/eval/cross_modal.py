"""Cross-modal retrieval scores: R@K, median and mean rank, rsum (in percent).

Ranks are counted, not sorted: for a query, rank = 1 + the number of wrong
references scoring strictly higher than its best right one (ties count in the
query's favour). Image queries are scored in chunks of ``chunk_size`` images
against all captions, so memory is ``chunk_size x M`` and no ``N x M`` matrix
exists at once; the same chunk gives the caption queries' counts.

An image query is a hit at K when ANY of its captions is in the top K; a caption
query when its image is (the COCO/Flickr30K protocol). Which captions belong to
which image is data (``txt_to_img``), never "5 per image".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

RECALL_KS = (1, 5, 10)


def _check_inputs(img: Tensor, txt: Tensor, txt_to_img: Tensor) -> None:
    if img.dim() != 2 or txt.dim() != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(
            f"expected img [N, D] and txt [M, D], got {tuple(img.shape)} and {tuple(txt.shape)}"
        )
    if txt_to_img.shape != (txt.shape[0],):
        raise ValueError(
            f"txt_to_img must be [M] = [{txt.shape[0]}], got {tuple(txt_to_img.shape)}"
        )
    if txt.shape[0] and (txt_to_img.min() < 0 or txt_to_img.max() >= img.shape[0]):
        raise ValueError(f"txt_to_img has values outside [0, {img.shape[0]})")
    counts = torch.bincount(txt_to_img.cpu(), minlength=img.shape[0])
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise ValueError(f"images without any caption (e.g. {missing}): an image query needs one")


def retrieval_ranks(
    img: Tensor, txt: Tensor, txt_to_img: Tensor, chunk_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """1-based ranks: image->text ``[N]`` and text->image ``[M]`` (int64, on CPU)."""
    _check_inputs(img, txt, txt_to_img)
    device = img.device
    txt = txt.to(device=device, dtype=img.dtype)
    txt_to_img = txt_to_img.to(device)
    own_score = (img[txt_to_img] * txt).sum(dim=1)  # [M]
    i2t = torch.empty(img.shape[0], dtype=torch.long, device=device)
    t2i = torch.zeros(txt.shape[0], dtype=torch.long, device=device)
    for start in range(0, img.shape[0], chunk_size):
        rows = torch.arange(start, min(start + chunk_size, img.shape[0]), device=device)
        scores = img[rows] @ txt.T  # [n, M]
        own = txt_to_img.unsqueeze(0) == rows.unsqueeze(1)  # [n, M]
        best_own = scores.masked_fill(~own, -math.inf).amax(dim=1, keepdim=True)
        i2t[rows] = 1 + ((scores > best_own) & ~own).sum(dim=1)
        t2i += ((scores > own_score.unsqueeze(0)) & ~own).sum(dim=0)
    return i2t.cpu(), (t2i + 1).cpu()


def summarize_ranks(ranks: Tensor, prefix: str, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """R@K (percent), medr and meanr as vsepp computes them (1-based ranks)."""
    ranks = ranks.double()
    out = {f"{prefix}_r{k}": float((ranks <= k).double().mean() * 100) for k in ks}
    out[f"{prefix}_medr"] = float(torch.floor(torch.quantile(ranks - 1, 0.5)) + 1)
    out[f"{prefix}_meanr"] = float(ranks.mean())
    return out


def cross_modal_recall(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_to_img: Tensor,
    ks: Sequence[int] = RECALL_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Scores of image->text (``i2t_*``) and text->image (``t2i_*``) retrieval.

    Args:
        img_emb: ``[N, D]`` image embeddings; txt_emb: ``[M, D]`` caption embeddings.
        txt_to_img: ``[M]`` int, the image of each caption.
    Returns:
        ``i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_...`` and ``rsum`` (sum of the
        six recalls), plus ``n_images`` and ``n_captions``.
    """
    txt_to_img = torch.as_tensor(txt_to_img, dtype=torch.long)
    i2t, t2i = retrieval_ranks(img_emb, txt_emb, txt_to_img, chunk_size)
    result: dict[str, float] = {}
    result.update(summarize_ranks(i2t, "i2t", ks))
    result.update(summarize_ranks(t2i, "t2i", ks))
    result["rsum"] = sum(result[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    result["n_images"] = int(img_emb.shape[0])
    result["n_captions"] = int(txt_emb.shape[0])
    return result


def coco_1k_5k(
    img_emb: Tensor, txt_emb: Tensor, txt_to_img: Tensor, folds: int = 5, chunk_size: int = 1024
) -> dict[str, object]:
    """COCO protocols: ``coco1k`` = MEAN over 5 folds of consecutive images (each with
    its own captions), never the best fold (vsepp#26); ``coco5k`` = all images.

    Returns ``{"coco1k": scores, "coco5k": scores, "folds": [scores, ...]}``.
    """
    txt_to_img = torch.as_tensor(txt_to_img, dtype=torch.long)
    mean, fold_scores = coco_1k(img_emb, txt_emb, txt_to_img, folds, chunk_size)
    return {
        "coco1k": mean,
        "coco5k": cross_modal_recall(img_emb, txt_emb, txt_to_img, chunk_size=chunk_size),
        "folds": fold_scores,
    }


def coco_1k(
    img_emb: Tensor, txt_emb: Tensor, txt_to_img: Tensor, folds: int = 5, chunk_size: int = 1024
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Mean scores over ``folds`` folds of consecutive images, and each fold's scores."""
    n = img_emb.shape[0]
    if n % folds:
        raise ValueError(f"{n} images do not split into {folds} equal folds")
    size = n // folds
    fold_scores = []
    for fold in range(folds):
        keep = (txt_to_img >= fold * size) & (txt_to_img < (fold + 1) * size)
        fold_scores.append(
            cross_modal_recall(
                img_emb[fold * size : (fold + 1) * size],
                txt_emb[keep],
                txt_to_img[keep] - fold * size,
                chunk_size=chunk_size,
            )
        )
    mean = {key: sum(s[key] for s in fold_scores) / folds for key in fold_scores[0]}
    mean["n_images"], mean["n_captions"] = size, fold_scores[0]["n_captions"]
    return mean, fold_scores


PROTOCOLS = ("full", "coco1k", "coco5k", "f30k")


def evaluate_protocol(
    name: str, img_emb: Tensor, txt_emb: Tensor, txt_to_img: Tensor
) -> dict[str, object]:
    """Scores under a named protocol; the record names it and its sizes.

    ``full``/``f30k``/``coco5k``: every image against every caption of the split;
    ``coco1k``: mean over 5 folds (``coco_1k_5k``).
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use one of {PROTOCOLS}")
    if name == "coco1k":
        txt_to_img = torch.as_tensor(txt_to_img, dtype=torch.long)
        scores: dict[str, object] = dict(coco_1k(img_emb, txt_emb, txt_to_img)[0])
        scores["folds"] = 5
    else:
        scores = dict(cross_modal_recall(img_emb, txt_emb, txt_to_img))
    scores["protocol"] = name
    return scores
