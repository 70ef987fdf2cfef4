"""Device names as users type them: ``auto`` is cuda when available, else cpu."""

from __future__ import annotations

import torch

from retrievalkit.errors import InputError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` / ``None`` -> ``cuda`` when available, else ``cpu``; any other name
    is checked (``cpu``, ``cuda``, ``cuda:1``, ``mps``); a bad or absent device is an
    :class:`InputError` (one line from the CLI)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: no CUDA device here (use --device cpu or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r}: no MPS device here (use --device cpu or auto)")
    return device
