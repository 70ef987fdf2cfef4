"""Cross-modal retrieval scores: R@K, median and mean rank, rsum (recalls in percent).

An image query is a hit at K when ANY of its captions is in the top K; a caption
query when its image is (the COCO/Flickr30K protocol, vsepp#14). Which captions
belong to which image is data (``txt_to_img``), never "5 per image", and the
captions need not be grouped or ordered (CLIP_benchmark#7). Ranks are counted
in chunks, ties in the query's favour (see ``retrievalkit.eval.ranking``).

COCO 1K is the MEAN over 5 folds of 1,000 consecutive images, never the best
fold (vsepp#26); COCO 5K scores all 5,000 test images at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from retrievalkit.eval.ranking import retrieval_ranks

RECALL_KS = (1, 5, 10)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def summarize_ranks(ranks: Tensor, prefix: str, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """R@K (percent), ``medr`` and ``meanr`` of 1-based ``ranks [Q]``, as vsepp computes them.

    ``medr = floor(median(ranks - 1)) + 1`` (the median of an even count is the mean of
    the two middle ranks, then floored); ``meanr`` is the plain mean of the 1-based ranks.
    """
    ranks = ranks.double()
    n = ranks.numel()
    out = {f"{prefix}_r{k}": 100.0 * int((ranks <= k).sum()) / n for k in _check_ks(ks)}
    ordered = torch.sort(ranks - 1).values
    mid = (ordered.numel() - 1) // 2
    median = ordered[mid] if ordered.numel() % 2 else (ordered[mid] + ordered[mid + 1]) / 2
    out[f"{prefix}_medr"] = float(torch.floor(median) + 1)
    out[f"{prefix}_meanr"] = float(ranks.mean())
    return out


def cross_modal_recall(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_to_img: Tensor,
    ks: Sequence[int] = RECALL_KS,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Scores of image->text (``i2t_*``) and text->image (``t2i_*``) retrieval.

    Args:
        img_emb: ``[N, D]`` image embeddings; txt_emb: ``[M, D]`` caption embeddings
            (any device; scores are dot products, so pass L2-normalized embeddings
            for cosine similarity).
        txt_to_img: ``[M]`` int, the image of each caption. An image without any
            caption is an error (its query would have no right answer).
        ks: the K of R@K; ``rsum`` sums the recalls of both directions over ``ks``.
        chunk_size: image rows per matmul (memory ``chunk_size * M`` scores); None:
            about ``ranking.SCORE_BUDGET`` bytes.
    Returns:
        ``i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_r1 ... t2i_meanr rsum`` (floats;
        recalls in percent, ranks 1-based) and ``n_images``, ``n_captions`` (ints).
    """
    ks = _check_ks(ks)
    i2t, t2i = retrieval_ranks(img_emb, txt_emb, torch.as_tensor(txt_to_img), chunk_size)
    result: dict[str, Any] = {}
    result.update(summarize_ranks(i2t, "i2t", ks))
    result.update(summarize_ranks(t2i, "t2i", ks))
    result["rsum"] = sum(result[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    result["n_images"] = int(img_emb.shape[0])
    result["n_captions"] = int(txt_emb.shape[0])
    return result


def coco_1k(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_to_img: Tensor,
    folds: int = 5,
    chunk_size: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Mean scores over ``folds`` folds of consecutive images, and each fold's scores.

    Fold ``f`` holds images ``[f * N/folds, (f + 1) * N/folds)`` and exactly the
    captions whose ``txt_to_img`` points into it (wherever they sit in ``txt_emb``).
    Every score, ``rsum``, ``medr`` and ``meanr`` included, is the mean over folds.
    The mean record has ``n_images`` = images per fold, ``n_captions`` = captions
    per fold (the rounded mean if folds differ), ``n_captions_per_fold``, ``folds``,
    ``n_images_total`` and ``n_captions_total``.
    """
    n = img_emb.shape[0]
    if folds < 1 or n % folds:
        raise ValueError(f"{n} images do not split into {folds} equal folds of consecutive images")
    txt_to_img = torch.as_tensor(txt_to_img).to(dtype=torch.long)
    if txt_to_img.shape != (txt_emb.shape[0],):
        raise ValueError(
            f"txt_to_img must be [M] = [{txt_emb.shape[0]}], got {tuple(txt_to_img.shape)}"
        )
    size = n // folds
    fold_scores = []
    for fold in range(folds):
        lo, hi = fold * size, (fold + 1) * size
        keep = ((txt_to_img >= lo) & (txt_to_img < hi)).to(txt_emb.device)
        fold_scores.append(
            cross_modal_recall(
                img_emb[lo:hi],
                txt_emb[keep],
                txt_to_img[keep.cpu()] - lo,
                chunk_size=chunk_size,
            )
        )
    counts = [s["n_captions"] for s in fold_scores]
    mean: dict[str, Any] = {
        key: sum(s[key] for s in fold_scores) / folds
        for key in fold_scores[0]
        if key not in ("n_images", "n_captions")
    }
    mean.update(
        n_images=size,
        n_captions=round(sum(counts) / folds),
        n_captions_per_fold=counts,
        folds=folds,
        n_images_total=n,
        n_captions_total=int(txt_emb.shape[0]),
    )
    return mean, fold_scores


def coco_1k_5k(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_to_img: Tensor,
    folds: int = 5,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Both COCO protocols on the same test split, as a nested dict.

    Returns ``{"coco1k": mean over folds, "coco5k": all images at once,
    "folds": [each fold's scores]}``; each inner dict has the keys of
    ``cross_modal_recall`` (see ``coco_1k`` for the extra size fields of ``coco1k``).
    """
    mean, fold_scores = coco_1k(img_emb, txt_emb, txt_to_img, folds, chunk_size)
    return {
        "coco1k": mean,
        "coco5k": cross_modal_recall(img_emb, txt_emb, txt_to_img, chunk_size=chunk_size),
        "folds": fold_scores,
    }
