"""Registry of datasets by name: ``@register_dataset("emoji")`` and ``load_dataset``."""

from __future__ import annotations

from typing import Any

from retrievalkit.registry import Registry

DATASETS: Registry[dict[str, Any]] = Registry("dataset")
register_dataset = DATASETS.register

ALIASES = {"fashion-mnist": "fashion_mnist", "vsepp-precomp": "vsepp_precomp"}


def load_dataset(name: str, **options: Any) -> dict[str, Any]:
    """All splits of a dataset: ``{"train": split, "val": split, "test": split}``.

    Splits are ``CrossModalSplit`` (image <-> text) or ``LabelledSplit`` (labels).
    """
    import retrievalkit.data  # noqa: F401  (registers the built-in datasets)

    return DATASETS.build(ALIASES.get(name, name), **options)
