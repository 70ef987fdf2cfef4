"""Trainer progress (saved as ``trainer_state.json``) and RNG state capture."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class TrainerState:
    """Where a run is. ``epoch`` counts completed epochs over all stages.

    ``batch_in_epoch`` is the number of batches of the current epoch already
    trained (non-zero only for a mid-epoch checkpoint), so a resumed run skips
    exactly those batches of the same (seeded) epoch order; ``epoch_loss_sum``
    and ``epoch_loss_count`` carry the epoch's running mean loss across a resume.
    """

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    skipped_steps: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainerState:
        return cls(**values)


def capture_rng_state() -> dict[str, Any]:
    """Torch CPU/CUDA and Python RNG states, storable with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
