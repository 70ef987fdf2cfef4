"""Retrieval metrics: cross-modal R@K/medr/meanr/rsum and metric-learning scores.

Needs only torch. Ranks are counted in chunks (no full sort, no ``N x M`` matrix);
ties count in the query's favour everywhere.
"""

from retrievalkit.eval.clustering import kmeans, normalized_mutual_info
from retrievalkit.eval.cross_modal import (
    coco_1k,
    coco_1k_5k,
    cross_modal_recall,
    summarize_ranks,
)
from retrievalkit.eval.metric_learning import metric_learning_scores
from retrievalkit.eval.protocols import PROTOCOLS, evaluate_protocol
from retrievalkit.eval.ranking import retrieval_ranks

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
    "summarize_ranks",
]
