"""The one retrieval evaluator: embed a split with a model and score it (``evaluate``).

Used by validation during training, ``retrievalkit eval``, the demo and the
benchmarks. Every record states the protocol, the split and its sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from retrievalkit.models.modes import eval_mode
from retrievalkit.pipeline.embed import embed_captions, embed_model_images


def evaluate_cross_modal(
    model: torch.nn.Module,
    split: Any,
    transform: Callable[[Any], Tensor],
    protocol: str = "full",
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """R@K/medr/meanr/rsum of a ``CrossModalSplit`` under a named protocol."""
    from retrievalkit.eval import evaluate_protocol

    with eval_mode(model):
        img = embed_model_images(model, split.images, transform, batch_size, progress)
        txt = embed_captions(model.encode_text, split.captions, batch_size, progress)
    txt_to_img = torch.as_tensor(split.caption_image, dtype=torch.long)
    record = dict(evaluate_protocol(protocol, img, txt, txt_to_img))
    record.update(split=split.name, protocol=protocol)
    return record


def evaluate_metric_learning(
    model: torch.nn.Module,
    split: Any,
    transform: Callable[[Any], Tensor],
    batch_size: int = 256,
    progress: bool = False,
    query_split: Any | None = None,
) -> dict[str, Any]:
    """R@K, mAP, MAP@R, R-precision, NMI of a ``LabelledSplit`` (self excluded).

    With ``query_split`` (In-Shop), its items query ``split`` (the gallery).
    """
    from retrievalkit.eval import metric_learning_scores

    with eval_mode(model):
        emb = embed_model_images(model, split.images, transform, batch_size, progress)
        query_emb = None
        if query_split is not None:
            query_emb = embed_model_images(
                model, query_split.images, transform, batch_size, progress
            )
    labels = torch.as_tensor(split.labels, dtype=torch.long)
    kwargs: dict[str, Any] = {}
    if query_split is not None:
        kwargs = {
            "query_emb": query_emb,
            "query_labels": torch.as_tensor(query_split.labels, dtype=torch.long),
        }
    record = dict(metric_learning_scores(emb, labels, **kwargs))
    record.update(
        split=split.name,
        protocol="query_gallery" if query_split is not None else "leave_one_out",
        n_items=len(split.labels),
    )
    return record


def evaluate(
    model: torch.nn.Module,
    split: Any,
    transform: Callable[[Any], Tensor],
    protocol: str = "full",
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``split`` by what the model embeds: cross-modal recall under
    ``protocol`` when it has a text side, metric-learning scores otherwise."""
    if model.has_text:
        return evaluate_cross_modal(model, split, transform, protocol, batch_size, progress)
    return evaluate_metric_learning(model, split, transform, batch_size, progress)
