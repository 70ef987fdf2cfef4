"""The VSE++ hinge terms of a similarity matrix, with their gradient in closed form.
(Over 300 lines on purpose: the hinge terms and their closed-form gradient must change together to stay exact.)

For a query ``q`` (a row of ``S = Q K^T``, ``S [B, R]``, its match in column ``q``)
and its negatives ``j`` (columns whose id differs)::

    h_qj = (margin + S_qj) - S_qq        (float operations in this order)
    SH:  sum_j [h_qj]_+        MH:  max_j [h_qj]_+

Non-negative columns are set to the dtype's lowest value in ``S`` (from the sparse
list of same-id pairs, never a ``B x R`` mask), so every pass below is a plain
reduction.

Gradient ``G = dL/dS`` (then ``dQ = G K``, ``dK = G^T Q``), as autograd gives it
for the formula (``clamp(min=0)`` passes no gradient at exactly 0):
- SH: ``1`` where ``h_qj > 0``, ``-count`` on the diagonal: dense, two backward
  matmuls.
- MH: ``amax`` splits the gradient evenly over the tied maxima of the row of
  costs ``[h]_+`` (0 for non-negatives). Usually one negative attains it
  (``h > 0``): ``+1`` there and ``-1`` on the diagonal, so ``G`` has ``2 B`` entries
  and the backward is a gather, ``O(B D)``. A row whose maximum ties (the
  second largest similarity gives the same cost) is resolved exactly from its
  full row of ``S``; a row whose largest ``h`` is ``<= 0`` has no gradient.

Several matrices: without references ``S = img txt^T`` holds both directions
(image -> text along rows, text -> image along columns); with references the
batch's captions get their own ``txt [img; ref_img]^T``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from retrievalkit.losses import vse_native
from retrievalkit.losses.core import same_label_mask, same_label_pairs

# Elements of one block of rows in the passes over S (1 MiB in float32): the
# block and its few temporaries stay in the CPU's L2 cache.
HINGE_BLOCK_ELEMENTS = 1 << 18
# Up to this many elements a dense same-id mask is cheaper than sorting the ids.
DENSE_MASK_ELEMENTS = 1 << 16


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type`` (the similarities stay in the inputs'
    dtype); a no-op context when it is not enabled (entering ``torch.autocast``
    costs more than a small step's elementwise pass)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def row_blocks(num_rows: int, num_cols: int) -> list[slice]:
    """Slices of rows of about ``HINGE_BLOCK_ELEMENTS`` elements each."""
    step = max(1, HINGE_BLOCK_ELEMENTS // max(num_cols, 1))
    return [slice(a, min(a + step, num_rows)) for a in range(0, num_rows, step)]


@dataclass(frozen=True)
class Hardest:
    """Per query: the largest similarity to a negative ``value [n]`` (the lowest
    value if none), its column ``index [n]`` and the largest of the others ``second [n]``."""

    value: Tensor
    index: Tensor
    second: Tensor


def _hardest_rows(block: Tensor) -> Hardest:
    """Row maxima of ``block [b, R]`` (its entries are left as they were; ``max``
    and ``amax`` cost less than ``topk(2)``)."""
    value, index = block.max(dim=1)
    local = torch.arange(block.shape[0], device=block.device)
    block[local, index] = -torch.inf
    second = block.amax(dim=1)
    block[local, index] = value
    return Hardest(value, index, second)


def _merge_columns(running: Hardest | None, block: Tensor, start: int) -> Hardest:
    """Column maxima of the rows seen so far, updated with ``block [b, R]``
    (rows ``start..``; its entries are left as they were)."""
    value, index = block.max(dim=0)
    cols = torch.arange(block.shape[1], device=block.device)
    block[index, cols] = -torch.inf
    second = block.amax(dim=0)
    block[index, cols] = value
    index = index + start
    if running is None:
        return Hardest(value, index, second)
    best = torch.maximum(running.value, value)
    second = torch.maximum(
        torch.maximum(running.second, second), torch.minimum(running.value, value)
    )
    return Hardest(best, torch.where(value > running.value, index, running.index), second)


def hardest_negatives(sim: Tensor, columns: bool) -> tuple[Hardest, Hardest | None]:
    """Row (and with ``columns`` column) maxima of ``sim [B, R]``; non-negatives must
    already be at the lowest value.

    A small square matrix is stacked with its transpose and reduced along rows
    once (fewer operations); a large one is read once, block by block of rows,
    merging the blocks' column maxima.
    """
    if columns and sim.numel() <= DENSE_MASK_ELEMENTS:
        both = _hardest_rows(torch.cat([sim, sim.T]))
        num = sim.shape[0]
        halves = [
            Hardest(*(t[a : a + num] for t in (both.value, both.index, both.second)))
            for a in (0, num)
        ]
        return halves[0], halves[1]
    rows, cols = [], None
    for block_rows in row_blocks(*sim.shape):
        block = sim[block_rows]
        rows.append(_hardest_rows(block))
        if columns:
            cols = _merge_columns(cols, block, block_rows.start)
    if len(rows) == 1:
        return rows[0], cols
    joined = Hardest(
        *(torch.cat([getattr(h, f) for h in rows]) for f in ("value", "index", "second"))
    )
    return joined, cols


def sum_hinges_(sim: Tensor, diag: Tensor, margin: float, columns: bool) -> tuple[Tensor, Tensor]:
    """SH value and ``dL/dS`` of ``sim [B, R]`` (non-negatives at the lowest value), the
    gradient written over ``sim``. ``diag [B]``: each query's matched similarity.

    Rows are image -> text; with ``columns`` (square ``sim``) the columns are
    text -> image queries too and both directions' terms are added. With
    ``t = margin + S``, ``h = t - S_qq > 0`` exactly when ``t > S_qq``, so each
    block needs one addition, one comparison per direction, and the value is
    ``sum(G * t) - sum_q count_q S_qq`` (one dot product, no hinge matrix).
    """
    dots = sim.new_zeros(())
    counts = sim.new_zeros(sim.shape[0])
    col_diag = diag.unsqueeze(0)
    blocks = row_blocks(*sim.shape)
    # One buffer each for the block's (margin + S) and its column indicator, reused
    # by every block; the indicators are float 0/1 (comparisons written to a float
    # ``out=``): a bool matrix costs 4-5x more to make, sum and add on CPU.
    shifted_buf = sim.new_empty(blocks[0].stop - blocks[0].start, sim.shape[1])
    active_buf = torch.empty_like(shifted_buf) if columns else None
    for rows in blocks:
        block = sim[rows]
        shifted = torch.add(block, margin, out=shifted_buf[: block.shape[0]])  # (margin + S)
        torch.gt(shifted, diag[rows].unsqueeze(1), out=block)  # 0/1, over S
        counts[rows] += block.sum(dim=1)
        if active_buf is not None:
            active = torch.gt(shifted, col_diag, out=active_buf[: block.shape[0]])
            counts += active.sum(dim=0)  # (margin + S_ij) > S_jj
            block.add_(active)
        dots += torch.vdot(block.view(-1), shifted.view(-1))
    total = dots - torch.dot(counts, diag)
    sim.diagonal().sub_(counts)  # the diagonal is a non-negative: 0 before this
    return total, sim


@dataclass(frozen=True)
class SparseGrad:
    """``G`` as coordinates: ``rows``, ``cols`` (long) and ``values`` ``[nnz]``."""

    rows: Tensor
    cols: Tensor
    values: Tensor

    def accumulate_(
        self, d_queries: Tensor, d_keys: Tensor, queries: Tensor, keys: Tensor, scale: Tensor
    ) -> None:
        """``d_queries += scale G K``, ``d_keys += scale G^T Q`` (gathers, index-adds)."""
        values = (self.values * scale).unsqueeze(1)
        d_queries.index_add_(0, self.rows, keys.index_select(0, self.cols).mul_(values))
        d_keys.index_add_(0, self.cols, queries.index_select(0, self.rows).mul_(values))


@dataclass(frozen=True)
class HardestGrad:
    """MH ``dL/dS`` of one matrix: ``+row_weight[q]`` at ``(q, row_index[q])`` and
    ``-row_weight[q]`` at ``(q, q)`` for each row query ``q``; in the square case
    the same for each column query (``col_index``, ``col_weight``: ``(col_index[j],
    j)`` and ``(j, j)``); plus the queries whose maximum ties, resolved exactly."""

    row_index: Tensor
    row_weight: Tensor
    col_index: Tensor | None
    col_weight: Tensor | None
    ties: list[SparseGrad]

    def products(self, queries: Tensor, keys: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """``scale * (G K, G^T Q)``: gathers and index-adds, ``O(B D)`` (few
        ``[B, D]`` temporaries: each fresh one costs page faults)."""
        num = queries.shape[0]
        if (
            self.col_index is not None
            and self.col_weight is not None
            and vse_native.usable(queries, keys, self.row_weight, self.col_weight)
        ):  # square, float32 on the CPU: one fused loop (the same terms)
            d_queries, d_keys = vse_native.hardest_products(
                queries,
                keys,
                self.row_index,
                self.row_weight,
                self.col_index,
                self.col_weight,
                float(scale),
            )
            for tie in self.ties:
                tie.accumulate_(d_queries, d_keys, queries, keys, scale)
            return d_queries, d_keys
        w_row = (self.row_weight * scale).unsqueeze(1)
        w_col = None if self.col_weight is None else (self.col_weight * scale).unsqueeze(1)
        w_diag = w_row if w_col is None else w_row + w_col
        d_queries = keys.index_select(0, self.row_index).mul_(w_row)
        d_queries.addcmul_(keys[:num], w_diag, value=-1)  # the matched pairs
        if self.col_index is None or w_col is None:
            d_keys = torch.zeros_like(keys)
            scaled = queries * w_row
            d_keys[:num] -= scaled
        else:
            d_keys = queries.index_select(0, self.col_index).mul_(w_col)
            d_keys.addcmul_(queries, w_diag, value=-1)
            scaled = torch.mul(keys, w_col)
            d_queries.index_add_(0, self.col_index, scaled)
            scaled = torch.mul(queries, w_row, out=scaled)
        d_keys.index_add_(0, self.row_index, scaled)
        for tie in self.ties:
            tie.accumulate_(d_queries, d_keys, queries, keys, scale)
        return d_queries, d_keys


def _exact_rows(costs: Tensor, hinge: Tensor) -> Tensor:
    """``d amax(costs) / d h`` per row of ``costs = [hinge]_+ [n, R]``: the gradient
    split evenly over the tied maxima, kept where ``hinge > 0``."""
    tied = (costs == costs.amax(dim=1, keepdim=True)).to(costs.dtype)
    weight = tied / tied.sum(dim=1, keepdim=True)
    return weight * (hinge > 0)


def tied_rows(
    sim: Tensor, diag: Tensor, tied: Tensor, margin: float, transposed: bool
) -> SparseGrad:
    """The exact MH gradient of the queries marked ``tied [n]`` (bool), from their
    full rows (columns when ``transposed``) of ``sim``."""
    special = tied.nonzero().squeeze(1)
    rows = sim.T[special] if transposed else sim[special]
    hinge = (margin + rows) - diag[special].unsqueeze(1)
    exact = _exact_rows(hinge.clamp_min(0), hinge)
    local, cols = exact.nonzero(as_tuple=True)
    queries, others = torch.cat([special[local], special]), torch.cat([cols, special])
    values = torch.cat([exact[local, cols], -exact.sum(dim=1)])
    if transposed:
        queries, others = others, queries
    return SparseGrad(queries, others, values)


def max_hinge_grad(
    sim: Tensor, diag: Tensor, hardest: Hardest, margin: float, transposed: bool
) -> tuple[Tensor, Tensor, list[SparseGrad]]:
    """MH value, per-query weight of its hardest negative ``[n]`` (0 or 1) and the
    exact gradient of the queries whose maximum ties, for one direction.

    ``sim [B, R]`` (non-negatives at the lowest value), ``diag [n]`` the queries' matched
    similarities, ``hardest`` from :func:`hardest_negatives`; ``transposed``: the
    queries are the columns of ``sim`` (text -> image in the square case).
    """
    top = (margin + hardest.value) - diag  # the row's largest h (monotone in S)
    value = top.clamp_min(0).sum()
    active = top > 0
    tied = active & (((margin + hardest.second) - diag) == top)
    if not bool(tied.any()):
        return value, active.to(sim.dtype), []
    weight = (active & ~tied).to(sim.dtype)
    return value, weight, [tied_rows(sim, diag, tied, margin, transposed)]


def hinge_products(
    grad: Tensor | HardestGrad, queries: Tensor, keys: Tensor, scale: Tensor
) -> tuple[Tensor, Tensor]:
    """``scale * (G K, G^T Q)``: two matmuls for a dense ``G`` (on the CPU each with
    the scale as the BLAS call's alpha: no pass over the ``[B, D]`` products; beta =
    0, so ``addmm``'s input, the scalar ``scale``, is not read)."""
    if isinstance(grad, HardestGrad):
        return grad.products(queries, keys, scale)
    if grad.device.type == "cpu":
        alpha = float(scale)
        return (
            torch.addmm(scale, grad, keys, beta=0, alpha=alpha),
            torch.addmm(scale, grad.T, queries, beta=0, alpha=alpha),
        )
    return (grad @ keys).mul_(scale), (grad.T @ queries).mul_(scale)


def exclude_same_ids_(sim: Tensor, ids: Tensor | None, all_ids: Tensor) -> None:
    """Set ``sim [B, R]`` to its dtype's lowest value (finite: ``0 * lowest`` is 0 in
    the SH dot product) where the row's id equals the column's
    (``ids=None``: all ids distinct, only the diagonal). Small matrices use one
    ``B x R`` mask (fewer operations), large ones the sparse list of pairs."""
    lowest = torch.finfo(sim.dtype).min
    if ids is None:
        sim.diagonal().fill_(lowest)
    elif sim.numel() <= DENSE_MASK_ELEMENTS:
        sim.masked_fill_(same_label_mask(ids, all_ids), lowest)
    else:
        same_rows, same_cols = same_label_pairs(ids, all_ids)
        sim[same_rows, same_cols] = lowest


def hinge_terms(
    sim: Tensor,
    ids: Tensor | None,
    all_ids: Tensor,
    margin: float,
    max_violation: bool,
    columns: bool,
) -> tuple[Tensor, Tensor | HardestGrad]:
    """Value and ``dL/dS`` of the hinge terms of ``sim [B, R]`` (overwritten).

    Rows are queries with ids ``ids [B]`` (None: all distinct, no references),
    columns have ``all_ids [R]``; with ``columns`` (square, ``all_ids`` = ``ids``)
    the columns are queries too.
    """
    diag = sim.diagonal().clone()
    exclude_same_ids_(sim, ids, all_ids)
    if not max_violation:
        return sum_hinges_(sim, diag, margin, columns)
    row_hardest, col_hardest = hardest_negatives(sim, columns)
    value, row_weight, ties = max_hinge_grad(sim, diag, row_hardest, margin, transposed=False)
    if col_hardest is None:
        return value, HardestGrad(row_hardest.index, row_weight, None, None, ties)
    col_value, col_weight, col_ties = max_hinge_grad(sim, diag, col_hardest, margin, True)
    grad = HardestGrad(
        row_hardest.index, row_weight, col_hardest.index, col_weight, ties + col_ties
    )
    return value + col_value, grad


def _query_key_pairs(
    img: Tensor, txt: Tensor, ref_img: Tensor | None, ref_txt: Tensor | None
) -> list[tuple[Tensor, Tensor]]:
    """The ``(queries, keys)`` of each similarity matrix: ``[(img, txt)]`` (both
    directions in one square matrix) or, with references, image -> text and text
    -> image separately."""
    if ref_img is None or ref_txt is None:
        return [(img, txt)]
    return [(img, torch.cat([txt, ref_txt])), (txt, torch.cat([img, ref_img]))]


class VSEHinge(torch.autograd.Function):
    """``(img [B, D], txt [B, D], ref_img [M, D] | None, ref_txt [M, D] | None)`` ->
    the summed hinge terms of both directions (scalar).

    Inputs must share one float32/float64 dtype; ``ids [B]`` (None: all distinct
    and no references), ``all_ids [B + M]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        img: Tensor,
        txt: Tensor,
        ref_img: Tensor | None,
        ref_txt: Tensor | None,
        ids: Tensor | None,
        all_ids: Tensor,
        margin: float,
        max_violation: bool,
    ) -> Tensor:
        with autocast_off(img.device.type):
            pairs = _query_key_pairs(img, txt, ref_img, ref_txt)
            total, grads = img.new_zeros(()), []
            for queries, keys in pairs:
                value, grad = hinge_terms(
                    queries @ keys.T, ids, all_ids, margin, max_violation, len(pairs) == 1
                )
                total += value
                grads.append(grad)
        ctx.save_for_backward(*(t for pair in pairs for t in pair))  # the refs' copies
        ctx.grads = grads
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        pairs = list(zip(saved[::2], saved[1::2], strict=True))
        img = saved[0]
        scale = grad_output.to(img.dtype)
        with autocast_off(grad_output.device.type):
            products = [
                hinge_products(g, q, k, scale) for g, (q, k) in zip(ctx.grads, pairs, strict=True)
            ]
        if len(pairs) == 1:
            (d_img, d_txt), d_ref_img, d_ref_txt = products[0], None, None
        else:
            num = img.shape[0]
            (d_img, d_all_txt), (d_txt, d_all_img) = products
            d_img, d_ref_img = d_img.add_(d_all_img[:num]), d_all_img[num:]
            d_txt, d_ref_txt = d_txt.add_(d_all_txt[:num]), d_all_txt[num:]
        return d_img, d_txt, d_ref_img, d_ref_txt, None, None, None, None
