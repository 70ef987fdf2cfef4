"""Retrieval metrics: cross-modal R@K/medr/meanr/rsum and metric-learning scores."""

from retrievalkit.eval.clustering import kmeans, normalized_mutual_info
from retrievalkit.eval.cross_modal import (
    PROTOCOLS,
    coco_1k,
    coco_1k_5k,
    cross_modal_recall,
    evaluate_protocol,
    retrieval_ranks,
)
from retrievalkit.eval.metric_learning import metric_learning_scores

__all__ = [
    "PROTOCOLS",
    "coco_1k",
    "coco_1k_5k",
    "cross_modal_recall",
    "evaluate_protocol",
    "kmeans",
    "metric_learning_scores",
    "normalized_mutual_info",
    "retrieval_ranks",
]
