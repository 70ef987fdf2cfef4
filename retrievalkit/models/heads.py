"""Projection heads into the joint embedding space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

HEAD_KINDS = ("linear", "mlp", "identity", "residual")


class ProjectionHead(nn.Module):
    """``[B, in_dim] -> [B, out_dim]``: linear (VSE++, Xavier init as in vsepp), a
    2-layer MLP (``kind="mlp"``), ``"identity"`` (keeps a pretrained encoder's
    space as the joint space, e.g. a frozen MiniLM; needs ``in_dim == out_dim``), or
    ``"residual"``: ``x + mlp(x)`` with the MLP's last layer zero-initialised, so
    training starts from the pretrained space and learns a correction (needs
    ``in_dim == out_dim``)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kind: str = "linear",
        hidden_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind in ("identity", "residual") and in_dim != out_dim:
            raise ValueError(f"the {kind} head needs in_dim == out_dim, got {in_dim} and {out_dim}")
        if kind == "identity":
            self.net = nn.Identity()
        elif kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim)
        elif kind in ("mlp", "residual"):
            hidden = hidden_dim or max(in_dim, out_dim)
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, out_dim),
            )
        else:
            raise ValueError(f"unknown head kind {kind!r}; use one of {HEAD_KINDS}")
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = math.sqrt(6.0) / math.sqrt(module.in_features + module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)
        if kind == "residual":
            nn.init.zeros_(self.net[-1].weight)
        self.kind = kind

    def forward(self, features: Tensor) -> Tensor:
        """``[B, in_dim]`` -> ``[B, out_dim]``."""
        out = self.net(features)
        return features + out if self.kind == "residual" else out


HeadSpec = str | Mapping[str, Any]


def make_head(in_dim: int, out_dim: int, spec: HeadSpec = "linear") -> ProjectionHead:
    """A head from a kind (``"mlp"``) or a dict ``{"kind": "mlp", "hidden_dim": 1024,
    "dropout": 0.1}`` as written in a recipe."""
    if isinstance(spec, str):
        return ProjectionHead(in_dim, out_dim, spec)
    options = dict(spec)
    unknown = sorted(set(options) - {"kind", "hidden_dim", "dropout"})
    if unknown:
        raise ValueError(f"head options {unknown} unknown; a head takes kind, hidden_dim, dropout")
    return ProjectionHead(in_dim, out_dim, **options)
