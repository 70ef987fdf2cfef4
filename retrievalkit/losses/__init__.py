"""Losses on a similarity matrix and a positive mask (see ``core``).

Importing this package needs only torch.
"""

from retrievalkit.losses.core import PairBatch, PairLoss, build_pairs, similarity_matrix
from retrievalkit.losses.registry import LOSSES, build_loss, register_loss
from retrievalkit.losses.smooth_ap import SmoothAPLoss
from retrievalkit.losses.vse import VSELoss

__all__ = [
    "LOSSES",
    "PairBatch",
    "PairLoss",
    "SmoothAPLoss",
    "VSELoss",
    "build_loss",
    "build_pairs",
    "register_loss",
    "similarity_matrix",
]
