"""The one core every loss is written on: similarity matrix ``S`` and masks.
(Over 300 lines on purpose: S, the masks, PairBatch and PairLoss are the one contract every loss is written on.)

Conventions (see DESIGN.md):
- Queries are the batch ``embeddings [B, D]``. References are the batch itself
  followed by optional extra references ``ref_embeddings [M, D]`` (cross-batch
  memory, embeddings gathered from other ranks). So ``S`` is ``[B, B + M]`` and
  the self-pairs are the diagonal of its first ``B`` columns; they are neither
  positive nor negative.
- ``P[i, j] = labels[i] == ref_labels[j]`` minus self-pairs; ``N = ~(labels
  equal)`` (self-pairs are never negatives because they share the label).
- Embeddings are expected L2-normalized (the models do it); losses do not
  renormalize. Inputs in float16/bfloat16 are upcast and the loss is computed
  in float32 (float64 stays float64), also under autocast.
- Masks are made from the labels on demand: whole (``PairBatch.pos``) or one
  block of query rows at a time (``PairBatch.blocks``), so a loss that works
  block by block never holds a ``B x R`` boolean mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# Elements of one block of query rows (b x R): 1 MiB in float32, so a loss's few
# block temporaries stay in a core's L2 cache (measured faster than 4 MiB blocks
# at B = 4096 on one thread) while the number of operations stays small.
BLOCK_ELEMENTS = 1 << 18


def symmetrized(grad: Tensor) -> Tensor:
    """``grad + grad.T`` for a square ``[B, B]`` matrix.

    The plain expression reads ``grad.T`` with a stride of ``B`` elements;
    torch's transposing copy is blocked, so copy first, then add in place
    (measured 2.5x faster on CPU at B = 4096, and only two operations).
    """
    out = grad.T.contiguous()
    return out.add_(grad)


def symmetrize_(grad: Tensor, tile: int = 256) -> Tensor:
    """``grad + grad.T`` written over the square ``grad [B, B]``, tile by tile.

    Each pair of ``tile x tile`` blocks (256 KiB in float32) is added and copied
    back transposed while it is in the cache: no second ``B x B`` matrix, and
    measured 1.7x faster than :func:`symmetrized` at B = 4096 on one CPU thread.
    The result equals :func:`symmetrized` exactly (the same additions).
    """
    num = grad.shape[0]
    for a in range(0, num, tile):
        rows = slice(a, min(a + tile, num))
        diagonal = grad[rows, rows]
        diagonal.add_(diagonal.T.clone())
        for c in range(a + tile, num, tile):
            cols = slice(c, min(c + tile, num))
            upper, lower = grad[rows, cols], grad[cols, rows]
            upper.add_(lower.T)
            lower.copy_(upper.T)
    return grad


# Rows per matmul of :func:`scaled_gram` and the tile of its mirroring pass.
GRAM_ROW_BLOCK = 512
GRAM_MIRROR_TILE = 256


def scaled_gram(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``alpha * x @ x.T`` ``[B, B]`` for ``x [B, D]``, exactly symmetric.

    Above ``GRAM_ROW_BLOCK`` rows only the upper triangle is multiplied, one
    matmul per block of rows (about half the work of the full ``B x B x D``
    matmul, ``alpha`` applied by the matmul itself), then mirrored into the lower
    triangle tile by tile while each tile is in the cache: 13% faster than one
    full matmul at B = 4096, D = 512 on one CPU thread here (a throwaway
    interleaved comparison; ``benchmarks/losses.py`` times the losses that use
    it). Entries may differ from the full matmul's in the last bit (another
    blocking of the sums). Up to ``GRAM_ROW_BLOCK`` rows it is one matmul, whose
    result this BLAS makes symmetric bit for bit (tested).
    """
    num = x.shape[0]
    if num <= GRAM_ROW_BLOCK:
        return torch.addmm(x.new_empty(num, num), x, x.T, beta=0, alpha=alpha)
    out = x.new_empty(num, num)
    for a in range(0, num, GRAM_ROW_BLOCK):
        rows = slice(a, min(a + GRAM_ROW_BLOCK, num))
        upper = out[rows, a:]
        torch.addmm(upper, x[rows], x[a:].T, beta=0, alpha=alpha, out=upper)
    for a in range(0, num, GRAM_MIRROR_TILE):
        rows = slice(a, min(a + GRAM_MIRROR_TILE, num))
        block = out[rows, rows]
        block.copy_(block.triu() + block.triu(1).T)
        for c in range(a + GRAM_MIRROR_TILE, num, GRAM_MIRROR_TILE):
            cols = slice(c, min(c + GRAM_MIRROR_TILE, num))
            out[cols, rows].copy_(out[rows, cols].T)
    return out


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in: float64 stays, everything else -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Gram(torch.autograd.Function):
    """``x [B, D] -> x @ x.T [B, B]`` with the one-matmul backward ``(G + G.T) @ x``.

    Autograd's backward of ``x @ x.T`` does two matmuls (one per operand); this
    is the same gradient with one. ``x`` must already be in the compute dtype.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return scaled_gram(x)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        with torch.autocast(device_type=x.device.type, enabled=False):
            return symmetrized(grad) @ x


def similarity_matrix(queries: Tensor, references: Tensor) -> Tensor:
    """Cosine similarity of L2-normalized rows: ``[B, D] x [M, D] -> [B, M]``.

    Computed in float32 (or float64) whatever the input dtype, also under
    autocast. When ``references is queries`` the Gram matrix is built with a
    one-matmul backward.
    """
    dtype = compute_dtype(queries.dtype)
    if references is queries:
        return _Gram.apply(queries.to(dtype))
    with torch.autocast(device_type=queries.device.type, enabled=False):
        return queries.to(dtype) @ references.to(dtype).T


def same_label_mask(query_labels: Tensor, ref_labels: Tensor) -> Tensor:
    """``[B] x [M] -> bool [B, M]``, True where the labels are equal."""
    return query_labels.reshape(-1, 1) == ref_labels.reshape(1, -1)


def same_label_pairs(query_labels: Tensor, ref_labels: Tensor) -> tuple[Tensor, Tensor]:
    """The ``(row, col)`` coordinates (two long ``[nnz]``) where
    ``query_labels[row] == ref_labels[col]``, from sorted labels (``O(R log R + nnz)``),
    without a ``B x R`` mask. Rows come in order, columns in increasing order per row."""
    device = query_labels.device
    order = torch.argsort(ref_labels, stable=True)
    sorted_labels = ref_labels[order].contiguous()
    queries = query_labels.contiguous()
    start = torch.searchsorted(sorted_labels, queries, side="left")
    count = torch.searchsorted(sorted_labels, queries, side="right") - start
    rows = torch.repeat_interleave(torch.arange(queries.shape[0], device=device), count)
    first = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
    cols = order[first + torch.arange(rows.shape[0], device=device)]
    return rows, cols


@dataclass(frozen=True)
class SameLabelPairs:
    """Every ``(row, col)`` with ``labels[row] == ref_labels[col]`` (self-pairs
    included), row by row: ``rows``, ``cols`` (long ``[nnz]``) and ``offsets``
    (Python ints ``[B + 1]``: row ``q``'s pairs are ``offsets[q]:offsets[q + 1]``).

    Made once per loss call from sorted labels (``O(R log R + nnz)``, one
    device-to-host copy); a block of rows takes its pairs by slicing
    (:meth:`in_rows`), so excluding them from a ``b x R`` block is an ``O(b K)``
    ``index_put_``, never a ``b x R`` mask.
    """

    rows: Tensor
    cols: Tensor
    offsets: list[int]

    @classmethod
    def from_labels(cls, labels: Tensor, ref_labels: Tensor) -> SameLabelPairs:
        rows, cols = same_label_pairs(labels, ref_labels)
        counts = torch.bincount(rows, minlength=labels.shape[0])
        offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).tolist()
        return cls(rows, cols, offsets)

    def in_rows(self, rows: slice) -> tuple[Tensor, Tensor]:
        """``(local rows, cols)`` of the pairs of query rows ``rows`` (local: minus
        ``rows.start``), ready for ``block[local, cols]``."""
        lo, hi = self.offsets[rows.start], self.offsets[rows.stop]
        return self.rows[lo:hi] - rows.start, self.cols[lo:hi]


def self_pair_mask(num_queries: int, num_refs: int, device: torch.device) -> Tensor:
    """bool ``[B, M]``, True on the diagonal of the first ``B`` columns."""
    rows = torch.arange(num_queries, device=device)
    mask = torch.zeros(num_queries, num_refs, dtype=torch.bool, device=device)
    mask[rows, rows] = True
    return mask


@dataclass(frozen=True)
class RowBlock:
    """Query rows ``rows`` of a :class:`PairBatch`, with its masks made on first use.

    Attributes:
        sim: ``[b, R]`` similarities of these queries to all references.
        codes: ``[b]`` and ``ref_codes [R]``: the labels as small integers in
            ``sim``'s dtype (equal labels, equal codes), so a mask is one
            float comparison.
        rows: the slice of query indices (``rows.start`` is the first one).
        same_pairs: the batch's same-label pairs (:attr:`same_index` takes this
            block's), when the blocks were made with ``same_pairs=True``.

    Masks: ``pos_float`` / ``neg_float`` (``[b, R]``, 0/1 in ``sim``'s dtype: blend
    with arithmetic, which is vectorized on CPU where ``torch.where`` and
    ``masked_fill`` on a bool mask cost ~20x more per element) and the bool
    ``pos`` / ``neg``. Positives exclude self-pairs; negatives are different labels.
    """

    sim: Tensor
    codes: Tensor
    ref_codes: Tensor
    rows: slice
    same_pairs: SameLabelPairs | None = None

    @cached_property
    def same_index(self) -> tuple[Tensor, Tensor]:
        """``(local rows, cols)`` of the block's same-label pairs (self-pairs
        included): ``block.sim[same_index] = value`` excludes them in ``O(b K)``."""
        if self.same_pairs is None:
            raise ValueError("this block was made without its same-label pairs")
        return self.same_pairs.in_rows(self.rows)

    @cached_property
    def same_float(self) -> Tensor:
        """``[b, R]`` 0/1: same label (self-pairs included)."""
        out = torch.empty_like(self.sim)
        return torch.eq(self.codes.unsqueeze(1), self.ref_codes.unsqueeze(0), out=out)

    @cached_property
    def pos_float(self) -> Tensor:
        """``[b, R]`` 0/1: positive pairs (same label, self-pairs excluded)."""
        pos = self.same_float.clone()
        local = torch.arange(pos.shape[0], device=pos.device)
        pos[local, local + self.rows.start] = 0
        return pos

    @cached_property
    def neg_float(self) -> Tensor:
        """``[b, R]`` 0/1: negative pairs (different label)."""
        return torch.sub(1, self.same_float)

    @cached_property
    def pos(self) -> Tensor:
        """``[b, R]`` bool positives."""
        return self.pos_float > 0

    @cached_property
    def neg(self) -> Tensor:
        """``[b, R]`` bool negatives."""
        return self.same_float == 0


def block_rows(num_cols: int, max_elements: int | None = None) -> int:
    """Rows per block of :meth:`PairBatch.blocks`: about ``max_elements`` (default
    ``BLOCK_ELEMENTS``) entries of ``num_cols`` columns, at least one row."""
    max_elements = BLOCK_ELEMENTS if max_elements is None else max_elements
    return max(1, max_elements // max(num_cols, 1))


def label_codes(labels: Tensor, ref_labels: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``labels [B]`` and ``ref_labels [R]`` as dense integer codes in ``dtype`` (equal
    labels, equal codes; exact in float32 below 2^24 distinct labels)."""
    _, inverse = torch.unique(
        torch.cat([labels, ref_labels.to(labels.device)]), return_inverse=True
    )
    codes = inverse.to(dtype)
    return codes[: labels.shape[0]], codes[labels.shape[0] :]


@dataclass(frozen=True)
class PairBatch:
    """Similarities of a batch of queries to its references, with their labels.

    Attributes:
        sim: ``[B, R]`` float32/64 similarities (R = B + number of extra refs).
        labels: ``[B]`` labels of the queries.
        ref_labels: ``[R]`` labels of all references (the batch's first).
        gram: ``sim`` is ``x x^T`` of the queries themselves (then
            ``|S_ij| <= max_i S_ii``, see :meth:`abs_bound`).

    ``pos`` / ``neg`` are the whole ``[B, R]`` masks (made on first use);
    :meth:`blocks` gives them block by block of rows instead.
    """

    sim: Tensor
    labels: Tensor
    ref_labels: Tensor
    gram: bool = False

    @property
    def num_queries(self) -> int:
        return self.sim.shape[0]

    @cached_property
    def pos(self) -> Tensor:
        """``[B, R]`` bool: same label, self-pairs excluded."""
        same = same_label_mask(self.labels, self.ref_labels)
        rows = torch.arange(self.num_queries, device=same.device)
        same[rows, rows] = False
        return same

    @cached_property
    def neg(self) -> Tensor:
        """``[B, R]`` bool: different label."""
        return ~same_label_mask(self.labels, self.ref_labels)

    def blocks(
        self,
        sim: Tensor | None = None,
        max_elements: int | None = None,
        same_pairs: bool = False,
    ) -> Iterator[RowBlock]:
        """Blocks of about ``max_elements`` (default ``BLOCK_ELEMENTS``) entries, in
        row order, with their masks.

        ``sim`` (default ``self.sim``) may be any ``[B, R]`` tensor to slice, e.g.
        a detached copy. ``same_pairs``: give every block its same-label pairs
        (:attr:`RowBlock.same_index`, from :attr:`same_label_pairs`).
        """
        sim = self.sim if sim is None else sim
        step = block_rows(sim.shape[1], max_elements)
        codes, ref_codes = label_codes(self.labels, self.ref_labels, sim.dtype)
        same = self.same_label_pairs if same_pairs else None
        for start in range(0, self.num_queries, step):
            rows = slice(start, min(start + step, self.num_queries))
            yield RowBlock(sim[rows], codes[rows], ref_codes, rows, same)

    @cached_property
    def same_label_pairs(self) -> SameLabelPairs:
        """The ``(row, col)`` pairs with equal labels (self-pairs included), row by row."""
        return SameLabelPairs.from_labels(self.labels, self.ref_labels)

    def abs_bound(self, sim: Tensor | None = None) -> float:
        """An upper bound of ``|S|`` (``sim``: default ``self.sim``, before any block
        overwrites it): ``max_i S_ii`` for a Gram matrix (``O(B)``, Cauchy-Schwarz),
        else ``max |S|`` (one pass). NaN if ``S`` has a NaN."""
        sim = self.sim if sim is None else sim
        if not sim.numel():
            return 0.0
        return float(sim.diagonal().amax() if self.gram else sim.abs().amax())

    def pair_counts(self) -> tuple[Tensor, Tensor]:
        """Per query the number of positives and of negatives: two ``[B]`` long tensors.

        Counted from the labels (``O(R log R)``), not from a ``B x R`` mask.
        """
        _, inverse, counts = torch.unique(self.ref_labels, return_inverse=True, return_counts=True)
        # every query label is among ref_labels (the batch is the first block of refs)
        same = counts[inverse[: self.num_queries]]
        return same - 1, self.sim.shape[1] - same

    def positive_index(self) -> tuple[Tensor, Tensor]:
        """The reference columns of every query's positives, from the labels.

        Returns ``idx [B, K]`` long (row ``q``: its ``n_pos[q]`` positive
        columns in increasing order, then padding 0; ``K`` = the largest count,
        at least 1) and ``n_pos [B]`` long. Sorting the labels costs
        ``O(R log R + B K)``; no ``B x R`` mask is made.
        """
        device, num_queries = self.labels.device, self.num_queries
        order = torch.argsort(self.ref_labels, stable=True)  # equal labels: column order
        sorted_labels = self.ref_labels[order].contiguous()
        query_labels = self.labels.contiguous()
        start = torch.searchsorted(sorted_labels, query_labels, side="left")
        count = torch.searchsorted(sorted_labels, query_labels, side="right") - start
        width = int(count.max()) if num_queries else 1
        offset = torch.arange(width, device=device)
        in_class = offset < count.unsqueeze(1)  # [B, width]
        slot = (start.unsqueeze(1) + offset).clamp(max=max(len(order) - 1, 0))
        cols = order[slot] if len(order) else slot
        # drop the query's own column (it is in its class: refs start with the batch)
        rows = torch.arange(num_queries, device=device).unsqueeze(1)
        keep = in_class & (cols != rows)
        # stable sort moves the kept columns to the front, in their order
        front = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
        idx = torch.where(keep, cols, 0).gather(1, front)[:, : max(width - 1, 1)]
        return idx, count - 1

    def zero(self) -> Tensor:
        """A zero that stays in the autograd graph (no pair -> loss 0, grads 0)."""
        return self.sim.sum() * 0.0


def check_embeddings(embeddings: Tensor, labels: Tensor, what: str = "embeddings") -> None:
    """Raise a clear error for wrong shapes/dtypes instead of a deep torch error."""
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings)
        raise ValueError(f"{what} must be a 2-D tensor [B, D], got {shape}")
    if not embeddings.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {embeddings.dtype}")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels)
        raise ValueError(f"labels for {what} must be a 1-D tensor [B], got {shape}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{what} has {embeddings.shape[0]} rows but its labels have {labels.shape[0]}"
        )
    if labels.is_floating_point():
        raise TypeError(f"labels for {what} must be integer ids, got {labels.dtype}")


def build_pairs(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> PairBatch:
    """Queries ``[B, D]`` against ``[batch; refs]`` -> :class:`PairBatch`."""
    check_embeddings(embeddings, labels)
    references, all_labels = embeddings, labels
    if ref_embeddings is not None or ref_labels is not None:
        if ref_embeddings is None or ref_labels is None:
            raise ValueError("ref_embeddings and ref_labels must be given together")
        check_embeddings(ref_embeddings, ref_labels, what="ref_embeddings")
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"ref_embeddings have dim {ref_embeddings.shape[1]}, "
                f"embeddings have dim {embeddings.shape[1]}"
            )
        references = torch.cat([embeddings, ref_embeddings.to(embeddings.dtype)])
        all_labels = torch.cat([labels, ref_labels.to(labels.device)])
    sim = similarity_matrix(embeddings, references)
    return PairBatch(sim=sim, labels=labels, ref_labels=all_labels)


def pml_alias(ref_embeddings: Tensor | None, ref_emb: Tensor | None) -> Tensor | None:
    """The references given as ``ref_embeddings`` or by PML's keyword ``ref_emb``."""
    if ref_emb is None:
        return ref_embeddings
    if ref_embeddings is not None:
        raise ValueError("give ref_embeddings or its alias ref_emb, not both")
    return ref_emb


class PairLoss(nn.Module):
    """Base of metric-learning losses written on ``(S, P)``.

    Call as ``loss(embeddings [B, D], labels [B], ref_embeddings=None,
    ref_labels=None) -> scalar``. Subclasses implement :meth:`loss_from_pairs`.

    PML's keyword names work too: ``loss(embeddings, labels, ref_emb=R,
    ref_labels=L)`` is ``loss(embeddings, labels, R, L)``. One difference in
    meaning: here the batch always stays among the references (``R`` adds rows
    after it, self-pairs excluded), while PML's ``ref_emb`` replaces them.

    Class attributes describe capabilities (contract tests read them):
    ``accepts_references`` (extra reference rows allowed).
    """

    accepts_references: bool = True
    #: argument -> the model output (or batch field) a recipe term passes by default
    default_inputs: ClassVar[dict[str, str]] = {"embeddings": "embedding", "labels": "ids"}

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_emb: Tensor | None = None,
    ) -> Tensor:
        ref_embeddings = pml_alias(ref_embeddings, ref_emb)
        if ref_embeddings is not None and not self.accepts_references:
            raise ValueError(f"{type(self).__name__} does not accept reference embeddings")
        self.check_inputs(embeddings, ref_embeddings)
        if ref_embeddings is None and ref_labels is None:
            check_embeddings(embeddings, labels)
            value = self.gram_loss(embeddings.to(compute_dtype(embeddings.dtype)), labels)
            if value is not None:
                return value
        pairs = build_pairs(embeddings, labels, ref_embeddings, ref_labels)
        return self.loss_from_pairs(pairs)

    def gram_loss(self, x: Tensor, labels: Tensor) -> Tensor | None:
        """The loss of ``x [B, D]`` (compute dtype) without extra references, made
        from ``x`` directly (e.g. ``S = x x^T`` built inside the loss and its
        gradient written over it); ``None`` (default): use :meth:`loss_from_pairs`."""
        return None

    def check_inputs(self, embeddings: Tensor, ref_embeddings: Tensor | None) -> None:
        """Loss-specific input checks before the pairs are built (default: none)."""

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
