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

Nothing is sorted and no ``N x M`` matrix exists. Images are processed in chunks
of ``chunk_size``; one matmul per chunk gives ``S [chunk, M]``, which serves both
directions: image ranks are counted along its rows, caption ranks accumulate
column-wise over the chunks. Peak extra memory is two ``[chunk, M]`` buffers.

Floating point: a "tie" means equal computed scores. For image queries the best
positive and all competitors come from the same matmul call, so exact ties are
always resolved optimistically. A caption's own score is needed before the
chunks holding other images are scored, so it is computed first by a small
matmul of the same image rows against only the chunk's own captions; BLAS
libraries (MKL here) give the same bits for it as for the full chunk (tested
with duplicated images), and a caption's own image is never counted against it.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 256
MIN_ROWS = 16


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
    for name, emb in (("img_emb", img), ("txt_emb", txt)):
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(f"{name} has NaN or infinite values (would score as ties)")


def _compute_pair(img: Tensor, txt: Tensor) -> tuple[Tensor, Tensor]:
    """Both on img's device in a common dtype; half precision is widened on CPU."""
    dtype = torch.promote_types(img.dtype, txt.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    if img.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return img.detach().to(dtype=dtype), txt.detach().to(device=img.device, dtype=dtype)


def _chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """Row ranges of at least ``MIN_ROWS`` rows each (a short tail joins the previous one).

    BLAS libraries compute matmuls with very few rows on other code paths whose
    rounding differs (MKL here: rows < 8), which would make equal inputs score
    differently in different chunks and break exact ties between chunks.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    size = max(chunk_size, MIN_ROWS)
    ranges = [(s, min(s + size, n)) for s in range(0, n, size)]
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < MIN_ROWS:
        ranges[-2:] = [(ranges[-2][0], n)]
    return ranges


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


@torch.no_grad()
def retrieval_ranks(
    img: Tensor, txt: Tensor, txt_to_img: Tensor, chunk_size: int = DEFAULT_CHUNK
) -> tuple[Tensor, Tensor]:
    """1-based ranks of image queries ``[N]`` and caption queries ``[M]`` (int64, CPU).

    Args:
        img: ``[N, D]`` image embeddings; txt: ``[M, D]`` caption embeddings.
        txt_to_img: ``[M]`` integer image index of each caption (any number of
            captions per image, in any order; every image needs one).
        chunk_size: image rows scored per matmul (at least ``MIN_ROWS``; a short last
            chunk joins the one before); memory ``~2 * chunk_size * M`` scores.
    """
    txt_to_img = torch.as_tensor(txt_to_img)
    check_cross_modal_inputs(img, txt, txt_to_img)
    img, txt = _compute_pair(img, txt)
    device, n_img, n_txt = img.device, img.shape[0], txt.shape[0]
    count_dtype = torch.float32 if max(n_img, n_txt) < 2**24 else torch.float64
    owner = txt_to_img.to(device=device, dtype=torch.long)
    img_rep, txt_rep = duplicate_representatives(img), duplicate_representatives(txt)
    for name, rep in (("image", img_rep), ("caption", txt_rep)):
        if rep.numel() > 1 and not bool(rep.any()):
            logger.warning(
                "all %s embeddings are identical (collapsed model?): every query of the "
                "other side ties, and ties count in its favour",
                name,
            )
    img_weight, txt_weight = (
        _multiplicity(img_rep, count_dtype),
        _multiplicity(txt_rep, count_dtype),
    )
    by_owner, owner_offsets = _grouped(owner, n_img)  # image queries: their own captions
    rep_owner = img_rep[owner]  # caption queries: the first copy of their image
    by_rep, rep_offsets = _grouped(rep_owner, n_img)
    chunks = _chunks(n_img, chunk_size)

    own = torch.empty(n_txt, dtype=img.dtype, device=device)  # s[rep_owner[m], m]
    for start, stop in chunks:
        caps = by_rep[rep_offsets[start] : rep_offsets[stop]]
        block = img[start:stop] @ txt[caps].T  # [n, c], same image rows as the main pass
        own[caps] = block[rep_owner[caps] - start, torch.arange(caps.numel(), device=device)]

    width = max(stop - start for start, stop in chunks)
    scores = torch.empty(width, n_txt, dtype=img.dtype, device=device)
    hits = torch.empty(width, n_txt, dtype=count_dtype, device=device)  # 0/1 comparisons
    i2t = torch.empty(n_img, dtype=torch.long, device=device)
    t2i = torch.zeros(n_txt, dtype=torch.long, device=device)
    for start, stop in chunks:
        n = stop - start
        s = torch.mm(img[start:stop], txt.T, out=scores[:n])  # [n, M]
        caps = by_owner[owner_offsets[start] : owner_offsets[stop]]
        local = owner[caps] - start
        best = torch.full((n,), -torch.inf, dtype=s.dtype, device=device)
        best.scatter_reduce_(0, local, s[local, txt_rep[caps]], reduce="amax")
        # image queries: one column per distinct caption, weighted by its copies; own
        # captions (and copies of them) never exceed their best, so no mask is needed
        torch.gt(s, best.unsqueeze(1), out=hits[:n])
        i2t[start:stop] = torch.mv(hits[:n], txt_weight).long()
        # caption queries: images (one row per distinct image) above the own score ...
        torch.gt(s, own.unsqueeze(0), out=hits[:n])
        t2i += torch.mv(hits[:n].T, img_weight[start:stop]).long()
        # ... minus the own image, should its bits here exceed the first-pass score
        caps = by_rep[rep_offsets[start] : rep_offsets[stop]]
        rows = rep_owner[caps]
        above = s[rows - start, caps] > own[caps]
        t2i[caps] -= (above.to(count_dtype) * img_weight[rows]).long()
    return (i2t + 1).cpu(), (t2i + 1).cpu()
