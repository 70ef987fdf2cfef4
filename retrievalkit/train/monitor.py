"""Collapse detection (vsepp#27): warn when all embeddings become the same.

Hardest-negative training with an unfrozen CNN can collapse: every embedding
equal, the VSE++ loss stuck at ``2 * B * margin``. The monitor tracks the mean
spread of the batch's embeddings and warns once when it falls below a threshold
for ``patience`` consecutive steps.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class CollapseMonitor:
    """Warns once when the embeddings' spread stays below ``min_spread``."""

    def __init__(self, min_spread: float = 1e-3, patience: int = 20) -> None:
        self.min_spread = min_spread
        self.patience = patience
        self.low_steps = 0
        self.warned = False

    @staticmethod
    def spread(embeddings: Tensor) -> float:
        """Mean per-dimension std over the batch: ``[B, D] -> float`` (0 = collapsed)."""
        if embeddings.shape[0] < 2:
            return float("inf")
        return float(embeddings.detach().float().std(dim=0).mean())

    def update(self, outputs: tuple[Tensor, ...], parts: dict[str, float], batch_size: int) -> None:
        with torch.no_grad():
            spread = min(self.spread(emb) for emb in outputs)
        self.low_steps = self.low_steps + 1 if spread < self.min_spread else 0
        if self.low_steps >= self.patience and not self.warned:
            self.warned = True
            log.warning(
                "embeddings collapsed: spread %.2e for %d steps (loss %s, batch %d). "
                "With VSE++ max-violation try an SH warm-up stage, a frozen image encoder "
                "first, or a lower lr (vsepp#27).",
                spread,
                self.low_steps,
                parts,
                batch_size,
            )
