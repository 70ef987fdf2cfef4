"""Registry of losses by recipe name: ``@register_loss("ms")``, ``build_loss(name, **kw)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from retrievalkit.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
register_loss = LOSSES.register


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered loss, e.g. ``build_loss("multi_similarity", beta=40)``."""
    import retrievalkit.losses  # noqa: F401  (registers every loss)

    return LOSSES.build(name, **kwargs)
