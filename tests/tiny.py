"""The tiny synthetic recipes the tests train in seconds, written out once.

``cross_modal(**changes)`` / ``metric(**changes)`` give a copy with changes merged in
(the ``tiny_cross_modal`` / ``tiny_metric`` fixtures of ``tests/conftest.py``);
``END_TO_END`` (two stages, a checkpoint every 2 steps) and
``END_TO_END_ADVERSARIAL`` are the runs the resume, kill and contract tests share.
"""

from __future__ import annotations

import copy
from typing import Any

TINY_CROSS_MODAL: dict[str, Any] = {
    "name": "tiny_shapes",
    "task": "cross_modal",
    "data": {
        "name": "synthetic_shapes",
        "options": {"n_images": 48, "size": 16},
        "image_size": 16,
        "batch_size": 8,
    },
    "model": {
        "image": {"name": "small_cnn", "widths": [8, 16], "out_dim": 16},
        "text": {"name": "gru", "word_dim": 8, "hidden_dim": 16},
        "embed_dim": 8,
    },
    "losses": [{"name": "vse"}],
    "epochs": 1,
}
TINY_METRIC: dict[str, Any] = {
    "name": "tiny_classes",
    "task": "metric",
    "data": {
        "name": "synthetic_shape_classes",
        "options": {"n_images": 192, "size": 16},
        "image_size": 16,
        "augment": False,
        "batch_size": 16,
        "sampler": "pk",
        "samples_per_class": 4,
    },
    "model": {"image": {"name": "small_cnn", "widths": [8], "out_dim": 8}, "embed_dim": 8},
    "losses": [{"name": "multi_similarity"}],
    "epochs": 1,
    "eval": {"metric": "map_at_r"},
}


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``changes``: mappings merged, other values replaced;
    ``stages`` given at the top replace the single stage's ``losses`` and ``epochs``."""
    out = copy.deepcopy(base)
    if "stages" in changes:
        out.pop("losses", None)
        out.pop("epochs", None)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def cross_modal(**changes: Any) -> dict[str, Any]:
    """48 synthetic shapes of 16 px with captions, small CNN + GRU into 8 dimensions,
    VSE, one epoch; with ``changes`` merged in."""
    return merged(TINY_CROSS_MODAL, changes)


def metric(**changes: Any) -> dict[str, Any]:
    """192 synthetic shapes in classes, P x K = 4 x 4, small CNN into 8 dimensions,
    multi-similarity, one epoch, MAP@R; with ``changes`` merged in."""
    return merged(TINY_METRIC, changes)


TWO_STAGES = [
    {"name": "sh", "epochs": 1, "losses": [{"name": "vse", "options": {"max_violation": False}}]},
    {"name": "mh", "epochs": 1, "losses": [{"name": "vse"}]},
]
END_TO_END = cross_modal(
    optim={"lr": 1e-3, "warmup_steps": 3},
    stages=TWO_STAGES,
    checkpoint_every_steps=2,
    log_every_steps=1,
)
# the same run with an adversarial term in stage 2 (its own optimizer, checkpointed)
END_TO_END_ADVERSARIAL = {
    **END_TO_END,
    "stages": [
        TWO_STAGES[0],
        {
            "name": "mh",
            "epochs": 1,
            "losses": [
                {"name": "vse"},
                {"name": "modality_adversarial", "weight": 0.5, "options": {"hidden": 8}},
            ],
        },
    ],
}
