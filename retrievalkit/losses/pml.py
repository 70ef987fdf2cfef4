"""pytorch-metric-learning's own losses as recipe losses (a cross-check, issue 13).

``pml_multi_similarity``, ``pml_triplet`` and ``pml_contrastive`` wrap PML's loss
objects (and miners) with PML's defaults (its default distance and reducer), so a
recipe can train the same model, data and budget with PML's code instead of ours.
PML is imported when such a loss is built: ``import retrievalkit.losses`` still
needs only torch, and building one without PML installed raises an ImportError
naming the package.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from retrievalkit.losses.core import PairLoss
from retrievalkit.losses.registry import register_loss


def _pml() -> Any:
    try:
        import pytorch_metric_learning
    except ImportError:
        raise ImportError(
            "the pml_* losses need pytorch-metric-learning (pip install pytorch-metric-learning)"
        ) from None
    return pytorch_metric_learning


class PMLLoss(PairLoss):
    """``loss(embeddings [B, D], labels [B])`` by a PML loss and optional PML miner."""

    accepts_references = False

    def __init__(self, loss: Any, miner: Any | None = None) -> None:
        super().__init__()
        self.loss, self.miner = loss, miner

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        if ref_embeddings is not None:
            raise ValueError(f"{type(self).__name__} does not accept reference embeddings")
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        value = self.loss(embeddings, labels, pairs)
        return value + embeddings.sum() * 0  # in the graph even when PML returns a constant


@register_loss("pml_multi_similarity")
class PMLMultiSimilarityLoss(PMLLoss):
    """PML ``MultiSimilarityLoss(alpha, beta, base)`` + ``MultiSimilarityMiner(epsilon)``
    (``epsilon=None``: no miner)."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, epsilon: float | None = 0.1
    ) -> None:
        _pml()
        from pytorch_metric_learning import losses, miners

        miner = miners.MultiSimilarityMiner(epsilon=epsilon) if epsilon is not None else None
        super().__init__(losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base), miner)


@register_loss("pml_triplet")
class PMLTripletLoss(PMLLoss):
    """PML ``TripletMarginLoss(margin)`` (its defaults: Euclidean distance on normalized
    embeddings, mean over non-zero triplets); ``mining="batch_hard"`` adds
    ``BatchHardMiner``, ``"all"`` uses every triplet."""

    def __init__(self, margin: float = 0.05, mining: str = "all") -> None:
        _pml()
        from pytorch_metric_learning import losses, miners

        if mining not in ("all", "batch_hard"):
            raise ValueError(f"pml_triplet: mining must be 'all' or 'batch_hard', got {mining!r}")
        miner = miners.BatchHardMiner() if mining == "batch_hard" else None
        super().__init__(losses.TripletMarginLoss(margin=margin), miner)


@register_loss("pml_contrastive")
class PMLContrastiveLoss(PMLLoss):
    """PML ``ContrastiveLoss(pos_margin, neg_margin)`` (its defaults: Euclidean distance,
    positives pulled below ``pos_margin``, negatives pushed beyond ``neg_margin``,
    mean over non-zero pairs)."""

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 1.0) -> None:
        _pml()
        from pytorch_metric_learning import losses

        super().__init__(losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin))
