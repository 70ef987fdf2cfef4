"""The one core every loss is written on: similarity matrix ``S`` and masks.

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
  in float32 (float64 stays float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in: float64 stays, everything else -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def similarity_matrix(queries: Tensor, references: Tensor) -> Tensor:
    """Cosine similarity of L2-normalized rows: ``[B, D] x [M, D] -> [B, M]``.

    Computed in float32 (or float64) whatever the input dtype, also under autocast.
    """
    dtype = compute_dtype(queries.dtype)
    with torch.autocast(device_type=queries.device.type, enabled=False):
        return queries.to(dtype) @ references.to(dtype).T


def same_label_mask(query_labels: Tensor, ref_labels: Tensor) -> Tensor:
    """``[B] x [M] -> bool [B, M]``, True where the labels are equal."""
    return query_labels.reshape(-1, 1) == ref_labels.reshape(1, -1)


def self_pair_mask(num_queries: int, num_refs: int, device: torch.device) -> Tensor:
    """bool ``[B, M]``, True on the diagonal of the first ``B`` columns."""
    rows = torch.arange(num_queries, device=device)
    mask = torch.zeros(num_queries, num_refs, dtype=torch.bool, device=device)
    mask[rows, rows] = True
    return mask


@dataclass(frozen=True)
class PairBatch:
    """Similarities and masks of one batch of queries against its references.

    Attributes:
        sim: ``[B, R]`` float32/64 similarities (R = B + number of extra refs).
        pos: ``[B, R]`` bool, positive pairs (same label, self-pairs excluded).
        neg: ``[B, R]`` bool, negative pairs (different label).
    """

    sim: Tensor
    pos: Tensor
    neg: Tensor

    @property
    def num_queries(self) -> int:
        return self.sim.shape[0]

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
    same = same_label_mask(labels, all_labels)
    self_pairs = self_pair_mask(sim.shape[0], sim.shape[1], sim.device)
    return PairBatch(sim=sim, pos=same & ~self_pairs, neg=~same)


class PairLoss(nn.Module):
    """Base of metric-learning losses written on ``(S, P)``.

    Call as ``loss(embeddings [B, D], labels [B], ref_embeddings=None,
    ref_labels=None) -> scalar``. Subclasses implement :meth:`loss_from_pairs`.

    Class attributes describe capabilities (contract tests read them):
    ``accepts_references`` (extra reference rows allowed).
    """

    accepts_references: bool = True

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        if ref_embeddings is not None and not self.accepts_references:
            raise ValueError(f"{type(self).__name__} does not accept reference embeddings")
        pairs = build_pairs(embeddings, labels, ref_embeddings, ref_labels)
        return self.loss_from_pairs(pairs)

    def loss_from_pairs(self, pairs: PairBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
