"""vsepp's evaluation loops (Faghri et al., ``evaluation.py`` ``i2t``/``t2i``), as a
reference to check :func:`~retrievalkit.eval.cross_modal_recall` against.

Slow on purpose (one full argsort per query, numpy): it reproduces the original
numbers loop for loop, so anyone can confirm that ours count ranks the same way.
``tests/eval`` asserts equality on every rank; ``benchmarks/eval.py`` times it.
"""

from __future__ import annotations

import numpy as np


def vsepp_i2t_t2i(images: np.ndarray, captions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """vsepp ``i2t`` and ``t2i`` (``measure='cosine'``), loop for loop.

    Args:
        images: ``[5N, D]``, each image repeated 5 times (one row per caption), as
            vsepp's encoder output is laid out.
        captions: ``[5N, D]``, captions ``5i .. 5i+4`` belong to image ``i``.

    Returns:
        The 0-based ranks of the image queries ``[N]`` and caption queries ``[5N]``.
    """
    npts = images.shape[0] // 5
    ranks_i = np.zeros(npts)
    for index in range(npts):
        im = images[5 * index].reshape(1, images.shape[1])
        d = np.dot(im, captions.T).flatten()
        inds = np.argsort(d)[::-1]
        rank = 1e20
        for i in range(5 * index, 5 * index + 5, 1):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks_i[index] = rank
    ims = np.array([images[i] for i in range(0, len(images), 5)])
    ranks_t = np.zeros(5 * npts)
    for index in range(npts):
        queries = captions[5 * index : 5 * index + 5]
        d = np.dot(queries, ims.T)
        inds = np.zeros(d.shape)
        for i in range(len(inds)):
            inds[i] = np.argsort(d[i])[::-1]
            ranks_t[5 * index + i] = np.where(inds[i] == index)[0][0]
    return ranks_i, ranks_t


def vsepp_scores(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    """vsepp's r1, r5, r10, medr, meanr from 0-based ``ranks``, keyed ``{prefix}_r1`` etc."""
    out = {f"{prefix}_r{k}": 100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)}
    out[f"{prefix}_medr"] = float(np.floor(np.median(ranks)) + 1)
    out[f"{prefix}_meanr"] = float(ranks.mean() + 1)
    return out
