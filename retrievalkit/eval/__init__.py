"""Retrieval metrics: cross-modal R@K/medr/meanr/rsum, metric-learning scores, and
hit@K / MRR@K of search on a typed query set (``query_set``).

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
from retrievalkit.eval.query_set import Query, emoji_query_file, hit_rate_at_k, load_query_set
from retrievalkit.eval.ranking import retrieval_ranks

__all__ = [
    "PROTOCOLS",
    "Query",
    "coco_1k",
    "coco_1k_5k",
    "cross_modal_recall",
    "emoji_query_file",
    "evaluate_protocol",
    "hit_rate_at_k",
    "kmeans",
    "load_query_set",
    "metric_learning_scores",
    "normalized_mutual_info",
    "retrieval_ranks",
    "summarize_ranks",
]
