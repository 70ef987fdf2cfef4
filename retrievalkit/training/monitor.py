"""Collapse detection (vsepp#27): warn when all embeddings become the same.

Hardest-negative training with an unfrozen CNN can collapse: every embedding
equal, the VSE++ loss stuck at ``2 * B * margin``. The monitor tracks the mean
spread of the batch's embeddings and warns once when it falls below a threshold
for ``patience`` consecutive steps. It also warns once when an adversarial
term reports a collapsing generator (mFSR: D1 always right, generated images
constant across the batch) for ``patience`` consecutive adversary steps.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class CollapseMonitor:
    """Warns once when the embeddings' spread stays below ``min_spread``, and once
    when a loss term stays at its collapse value (VSE++ MH: ``2 B margin``; within
    ``rel_tol``) for ``patience`` consecutive steps."""

    def __init__(self, min_spread: float = 1e-3, patience: int = 20, rel_tol: float = 2e-3) -> None:
        self.min_spread = min_spread
        self.patience = patience
        self.rel_tol = rel_tol
        self.low_steps = 0
        self.stuck_steps = 0
        self.warned = False
        self.warned_stuck = False
        self.adversary_steps = 0
        self.warned_adversary = False

    @staticmethod
    def spread(embeddings: Tensor) -> float:
        """Mean per-dimension std over the batch: ``[B, D] -> float`` (0 = collapsed)."""
        if embeddings.shape[0] < 2:
            return float("inf")
        return float(embeddings.detach().float().std(dim=0).mean())

    def update(
        self,
        outputs: tuple[Tensor, ...],
        parts: dict[str, float],
        batch_size: int,
        collapsed_values: dict[str, float] | None = None,
    ) -> None:
        """One training step: the encoders' outputs, the loss terms' values and,
        per term that knows it, the value the loss takes at collapse."""
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
        stuck = [
            name
            for name, value in (collapsed_values or {}).items()
            if name in parts and value > 0 and abs(parts[name] - value) <= self.rel_tol * value
        ]
        self.stuck_steps = self.stuck_steps + 1 if stuck else 0
        if self.stuck_steps >= self.patience and not self.warned_stuck:
            self.warned_stuck = True
            log.warning(
                "loss %s stuck at its collapse value %s for %d steps (batch %d): every "
                "hardest negative ties its positive. Try an SH warm-up stage, a frozen "
                "image encoder first, or a lower lr (vsepp#27).",
                {name: parts[name] for name in stuck},
                {name: collapsed_values[name] for name in stuck} if collapsed_values else {},
                self.stuck_steps,
                batch_size,
            )

    def update_adversaries(self, reasons: list[str], step: int) -> None:
        """One adversary step: the adversarial terms' collapse reasons (empty = healthy)."""
        self.adversary_steps = self.adversary_steps + 1 if reasons else 0
        if self.adversary_steps >= self.patience and not self.warned_adversary:
            self.warned_adversary = True
            log.warning(
                "step %d: the generator looks collapsed for %d steps: %s. Try a lower "
                "discriminator lr (its optim group), a pixel term, or fewer D steps.",
                step,
                self.adversary_steps,
                "; ".join(reasons),
            )
