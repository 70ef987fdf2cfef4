"""What a training step does with a bad batch or a bad loss, as the recipe says.

Checked per step: a batch with no rows (every item skipped by ``on_error:
skip``), a batch holding NaN/Inf (images or features), a loss that is not
finite, and (with ``optim.max_loss``) a loss above that bound, an exploding
loss. Each is logged with the step and what was wrong. ``optim.nonfinite``
decides the rest: ``"skip"`` (default) leaves the weights as they were and
counts the step in ``skipped_steps``; ``"stop"`` ends the run with a
:class:`TrainingStopped` (one line from the CLI) and the last checkpoint kept.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from retrievalkit.errors import UserError

log = logging.getLogger(__name__)

POLICIES = ("skip", "stop")


class TrainingStopped(UserError, RuntimeError):
    """A step went wrong and the recipe says ``optim.nonfinite: stop``."""


class StepGuard:
    """Decides, per step, whether to go on (see the module docstring)."""

    def __init__(self, policy: str = "skip", max_loss: float | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"optim.nonfinite must be 'skip' or 'stop', got {policy!r}")
        self.policy = policy
        self.max_loss = max_loss

    def batch_problem(self, images: torch.Tensor, ids: torch.Tensor) -> str | None:
        """What is wrong with a batch (``images [B, ...]``, ``ids [B]``), or None."""
        if ids.numel() == 0 or images.shape[0] == 0:
            return "empty batch (every item of it was skipped)"
        if images.is_floating_point() and not bool(torch.isfinite(images).all()):
            bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
            return f"{bad} of {images.shape[0]} inputs hold NaN or Inf values"
        return None

    def loss_problem(self, parts: dict[str, float]) -> str | None:
        """What is wrong with a step's loss parts (``parts["total"]``), or None."""
        total = parts["total"]
        if not math.isfinite(total):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
            return f"non-finite loss ({shown})"
        if self.max_loss is not None and total > self.max_loss:
            return f"loss {total:.4g} above optim.max_loss {self.max_loss:g} (exploding)"
        return None

    def handle(self, step: int, problem: str, where: Any = None) -> None:
        """Log ``problem``; raise :class:`TrainingStopped` under ``"stop"``."""
        if self.policy == "stop":
            kept = f"; the last checkpoint is {where}" if where else ""
            raise TrainingStopped(
                f"step {step}: {problem}; stopped as the recipe says (optim.nonfinite: stop){kept}"
            )
        log.warning("step %d: %s; step skipped (optim.nonfinite: skip)", step, problem)
