"""Losses on a similarity matrix and a positive mask (see ``core``).

Importing this package needs only torch.
"""

from retrievalkit.losses.adversarial import ModalityAdversarialLoss
from retrievalkit.losses.binomial import BinomialDevianceLoss
from retrievalkit.losses.clip import ClipLoss
from retrievalkit.losses.contrastive import ContrastiveLoss
from retrievalkit.losses.core import PairBatch, PairLoss, build_pairs, similarity_matrix
from retrievalkit.losses.distributed import (
    DistributedPairLoss,
    DistributedVSELoss,
    gather_with_grad,
)
from retrievalkit.losses.instance import InstanceLoss
from retrievalkit.losses.lifted import GeneralizedLiftedStructureLoss, LiftedStructureLoss
from retrievalkit.losses.memory import CrossBatchMemory, CrossModalMemory
from retrievalkit.losses.mfsr import (
    CaptionReconstructionLoss,
    ImageReconstructionLoss,
    ModalityLoss,
    SpecificLoss,
)
from retrievalkit.losses.multi_similarity import MultiSimilarityLoss, MultiSimilarityMiner
from retrievalkit.losses.pml import PMLLoss
from retrievalkit.losses.registry import LOSSES, build_loss, register_loss
from retrievalkit.losses.smooth_ap import SmoothAPLoss
from retrievalkit.losses.triplet import TripletMarginLoss
from retrievalkit.losses.vse import VSELoss

__all__ = [
    "LOSSES",
    "BinomialDevianceLoss",
    "CaptionReconstructionLoss",
    "ClipLoss",
    "ContrastiveLoss",
    "CrossBatchMemory",
    "CrossModalMemory",
    "DistributedPairLoss",
    "DistributedVSELoss",
    "GeneralizedLiftedStructureLoss",
    "ImageReconstructionLoss",
    "InstanceLoss",
    "LiftedStructureLoss",
    "ModalityAdversarialLoss",
    "ModalityLoss",
    "MultiSimilarityLoss",
    "MultiSimilarityMiner",
    "PMLLoss",
    "PairBatch",
    "PairLoss",
    "SmoothAPLoss",
    "SpecificLoss",
    "TripletMarginLoss",
    "VSELoss",
    "build_loss",
    "build_pairs",
    "gather_with_grad",
    "register_loss",
    "similarity_matrix",
]
