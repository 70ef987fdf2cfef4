"""Switching a model to eval mode for a block and back to the mode it was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` runs the block in eval mode (dropout off, BatchNorm
    on its running statistics), then restores ``model.train(was_training)``, also
    when the block raises. A module's own ``train`` (e.g. frozen BatchNorm kept in
    eval) decides what "back" means."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
