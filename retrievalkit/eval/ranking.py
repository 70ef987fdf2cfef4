"""Cross-modal ranks by counting, in chunks of image queries.

For every image ``i`` and caption ``m`` the score is ``s[i, m] = img[i] . txt[m]``.

- Image query ``i`` (image -> text): ``rank = 1 + #{captions m : s[i, m] > best_i}``
  where ``best_i`` is the highest score among the captions of image ``i``
  (``txt_to_img[m] == i``). This equals vsepp's ``i2t``: the position of the best
  ranked of its captions in the full sorted list.
- Caption query ``m`` (text -> image): ``rank = 1 + #{images i : s[i, m] > own_m}``
  with ``own_m = s[txt_to_img[m], m]`` (vsepp's ``t2i``).

Ties count in the query's favour ("optimistic"): a competitor must score
*strictly* higher than the right answer to push it down.

Nothing is sorted and no ``N x M`` matrix exists. Images are processed in chunks;
one matmul per chunk gives ``S [chunk, M]``, which serves both directions: image
ranks are counted along its rows, caption ranks accumulate column-wise over the
chunks (each caption's own score is computed first, as a dot product). Extra
memory: one ``[chunk, M]`` score buffer and one comparison buffer of the same
size (of 4 MiB with one CPU thread). With several threads each chunk is compared
in whole-chunk passes, not cache-sized row blocks: on a busy machine many short
parallel passes cost several times more than a few long ones, each waiting for a
descheduled thread (``benchmarks/row_blocks.py``, BENCHMARKS.md).
With ``chunk_size=None`` the chunk holds about ``SCORE_BUDGET`` bytes of scores
(64 MiB: 671 rows for 25,000 captions in float32), but at least ``MIN_AUTO_ROWS``
rows, since every matmul streams all captions from memory.

Floating point: a "tie" is an equality of computed scores, and the same dot
product can round differently in different matmul calls. Exact duplicates are
therefore handled explicitly: equal image vectors (and equal caption vectors) are
detected and scored once, with their multiplicity, so a copy of the right answer
never counts against a query, whatever the BLAS does. Caption queries compare
matmul scores with their own score computed as a separate dot product, so a
wrong image within rounding of the right one (about 1e-8 for unit float32
vectors) may fall on either side, as it may between any two BLAS libraries
(``benchmarks/eval.py``: 1 of 30,000 float32 ranks differs from vsepp's numpy
loop, at a float64 gap of 9e-9; none in float64).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

SCORE_BUDGET = 64 * 2**20  # bytes of one [chunk, M] score buffer (chunk_size=None) ...
MIN_AUTO_ROWS = 256  # ... but at least this many rows: each matmul streams all captions
BLOCK_BYTES = 4 * 2**20  # one CPU thread: rows of scores compared at a time (in cache)


def check_cross_modal_inputs(img: Tensor, txt: Tensor, txt_to_img: Tensor) -> None:
    """Raise ``ValueError`` naming the field when the shapes or the mapping are wrong."""
    if img.dim() != 2 or txt.dim() != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(
            f"expected img_emb [N, D] and txt_emb [M, D], got {tuple(img.shape)} and "
            f"{tuple(txt.shape)}"
        )
    if txt_to_img.dtype.is_floating_point or txt_to_img.dtype == torch.bool:
        raise ValueError(f"txt_to_img must hold integer image indices, got {txt_to_img.dtype}")
    if txt_to_img.shape != (txt.shape[0],):
        raise ValueError(
            f"txt_to_img must be [M] = [{txt.shape[0]}] (one image per caption), got "
            f"{tuple(txt_to_img.shape)}"
        )
    if img.shape[0] == 0:
        raise ValueError("img_emb is empty: need at least one image")
    if txt_to_img.min() < 0 or txt_to_img.max() >= img.shape[0]:
        raise ValueError(f"txt_to_img has values outside [0, {img.shape[0]})")
    counts = torch.bincount(txt_to_img.cpu(), minlength=img.shape[0])
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten()
        raise ValueError(
            f"{missing.numel()} images without any caption (e.g. {missing[:5].tolist()}): "
            "every image query needs at least one caption; drop them before scoring"
        )


def _compute_pair(img: Tensor, txt: Tensor) -> tuple[Tensor, Tensor]:
    """Both on img's device in a common dtype; half precision is scored in float32
    (exact integer counts, and CPU matmuls in half are slow)."""
    dtype = torch.promote_types(img.dtype, txt.dtype)
    if not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return img.detach().to(dtype=dtype), txt.detach().to(device=img.device, dtype=dtype)


def chunk_rows(n_img: int, n_txt: int, chunk_size: int | None, itemsize: int) -> int:
    """Image rows per matmul: ``chunk_size``, or when None what fits ``SCORE_BUDGET``
    (at least ``MIN_AUTO_ROWS``, at most ``n_img``)."""
    if chunk_size is None:
        fit = SCORE_BUDGET // max(1, n_txt * itemsize)
        return max(1, min(n_img, max(MIN_AUTO_ROWS, fit)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    return min(chunk_size, n_img)


def pass_rows(rows: int, n_txt: int, img: Tensor) -> int:
    """Rows per comparison pass: the whole chunk, except with one CPU thread, where
    cache-sized blocks (``BLOCK_BYTES``) are faster. With more threads, every pass
    waits for its slowest thread, which on a busy machine costs per pass, not per
    byte (``benchmarks/row_blocks.py``)."""
    if img.device.type != "cpu" or torch.get_num_threads() > 1:
        return rows
    return max(8, min(rows, BLOCK_BYTES // max(1, n_txt * img.element_size())))


def duplicate_representatives(x: Tensor) -> Tensor:
    """``[K]`` index of the first row equal to each row of ``x [K, D]`` (by value).

    Cheap when rows are distinct: rows are bucketed by the bytes of their first
    columns (an exact 64-bit key) and only rows sharing a key are compared in full.
    """
    k = x.shape[0]
    first = torch.arange(k, device=x.device)
    width = max(1, min(x.shape[1], 8 // x.element_size()))
    head = (x[:, :width] + 0.0).contiguous().view(torch.uint8)  # + 0.0 turns -0.0 into 0.0
    head = torch.nn.functional.pad(head, (0, 8 - head.shape[1])).view(torch.int64).squeeze(1)
    _, inverse, counts = torch.unique(head, return_inverse=True, return_counts=True)
    shared = counts[inverse] > 1
    if not bool(shared.any()):
        return first
    rows = torch.nonzero(shared).flatten()
    _, group = torch.unique(x[rows] + 0.0, dim=0, return_inverse=True)
    lowest = torch.full((int(group.max()) + 1,), k, device=x.device, dtype=torch.long)
    lowest.scatter_reduce_(0, group, rows, reduce="amin")
    first[rows] = lowest[group]
    return first


def _grouped(owner: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Captions sorted by ``owner [M]`` and the CPU offsets ``[n_groups + 1]`` of each group."""
    offsets = torch.zeros(n_groups + 1, dtype=torch.long)
    offsets[1:] = torch.bincount(owner, minlength=n_groups).cumsum(0).cpu()
    return torch.argsort(owner, stable=True), offsets


def _multiplicity(rep: Tensor, dtype: torch.dtype) -> Tensor:
    """``[K]`` number of copies at each representative row, 0 at the other copies."""
    return torch.bincount(rep, minlength=rep.numel()).to(dtype)


def _own_scores(img: Tensor, txt: Tensor, owner: Tensor, block: int = 4096) -> Tensor:
    """``[M]`` score of each caption with ``img[owner[m]]``, in blocks of captions."""
    own = torch.empty(txt.shape[0], dtype=img.dtype, device=img.device)
    for start in range(0, txt.shape[0], block):
        stop = min(start + block, txt.shape[0])
        own[start:stop] = (img[owner[start:stop]] * txt[start:stop]).sum(dim=1)
    if not bool(torch.isfinite(own).all()):
        raise ValueError("img_emb or txt_emb has NaN or infinite values (or the scores overflow)")
    return own


def _warn_if_collapsed(img_rep: Tensor, txt_rep: Tensor) -> None:
    for name, rep in (("image", img_rep), ("caption", txt_rep)):
        if rep.numel() > 1 and not bool(rep.any()):
            logger.warning(
                "all %s embeddings are identical (collapsed model?): every query of the "
                "other side ties, and ties count in its favour",
                name,
            )


@torch.no_grad()
def retrieval_ranks(
    img: Tensor, txt: Tensor, txt_to_img: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """1-based ranks of image queries ``[N]`` and caption queries ``[M]`` (int64, CPU).

    Args:
        img: ``[N, D]`` image embeddings; txt: ``[M, D]`` caption embeddings.
        txt_to_img: ``[M]`` integer image index of each caption (any number of
            captions per image, in any order; every image needs one).
        chunk_size: image rows per matmul (memory ``chunk_size * M`` scores), or
            None for about ``SCORE_BUDGET`` bytes.
    """
    txt_to_img = torch.as_tensor(txt_to_img)
    check_cross_modal_inputs(img, txt, txt_to_img)
    img, txt = _compute_pair(img, txt)
    device, n_img, n_txt = img.device, img.shape[0], txt.shape[0]
    count_dtype = torch.float32 if max(n_img, n_txt) < 2**24 else torch.float64
    owner = txt_to_img.to(device=device, dtype=torch.long)
    img_rep, txt_rep = duplicate_representatives(img), duplicate_representatives(txt)
    _warn_if_collapsed(img_rep, txt_rep)
    img_weight = _multiplicity(img_rep, count_dtype)  # copies at the first copy, else 0
    txt_weight = _multiplicity(txt_rep, count_dtype)
    rep_owner = img_rep[owner]  # caption -> first copy of its image
    own = _own_scores(img, txt, rep_owner)  # [M]
    by_owner, owner_offsets = _grouped(owner, n_img)  # image queries: their own captions
    by_rep, rep_offsets = _grouped(rep_owner, n_img)  # caption queries: their image's row

    rows = chunk_rows(n_img, n_txt, chunk_size, img.element_size())
    scores = torch.empty(rows, n_txt, dtype=img.dtype, device=device)
    block = pass_rows(rows, n_txt, img)
    hits = torch.empty(block, n_txt, dtype=count_dtype, device=device)
    i2t = torch.empty(n_img, dtype=torch.long, device=device)
    t2i = torch.zeros(n_txt, dtype=torch.long, device=device)
    for start in range(0, n_img, rows):
        stop = min(start + rows, n_img)
        s = torch.mm(img[start:stop], txt.T, out=scores[: stop - start])  # [n, M]
        # caption queries: the own image is never counted, even if its score here
        # rounds above ``own`` (checked first: the passes below overwrite ``s``)
        caps = by_rep[rep_offsets[start] : rep_offsets[stop]]
        self_hit = s[rep_owner[caps] - start, caps] > own[caps]
        t2i[caps] -= (self_hit.to(count_dtype) * img_weight[rep_owner[caps]]).long()
        # image queries: best own caption score (own captions and their copies never
        # exceed it, so no mask is needed)
        caps = by_owner[owner_offsets[start] : owner_offsets[stop]]
        local = owner[caps] - start
        best = torch.full((stop - start,), -torch.inf, dtype=s.dtype, device=device)
        best.scatter_reduce_(0, local, s[local, txt_rep[caps]], reduce="amax")
        # both directions, ``block`` rows at a time: image ranks count the distinct
        # captions above ``best`` (with their copies); caption ranks count the
        # distinct images above ``own`` (with theirs), accumulated over chunks
        for sub in range(0, stop - start, block):
            part = s[sub : sub + block]
            q = slice(start + sub, start + sub + part.shape[0])
            flags = torch.gt(part, best[sub : sub + block].unsqueeze(1), out=hits[: len(part)])
            i2t[q] = torch.mv(flags, txt_weight).long()
            part.gt_(own.unsqueeze(0))  # in place: 1.0 where the image scores above
            t2i += torch.mv(part.T, img_weight[q].to(s.dtype)).long()
    return (i2t + 1).cpu(), (t2i + 1).cpu()
