"""torchvision ResNet trunks as image encoders, weights only from local files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from retrievalkit.models.registry import IMAGE_ENCODERS

log = logging.getLogger(__name__)
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a local file (``torch.load(weights_only=True)``): a plain
    state dict or a checkpoint ``{"state_dict": ...}``; a DataParallel ``module.``
    prefix is removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a PyTorch weights file ({err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{path}: expected a state dict of tensors or a checkpoint {{'state_dict': ...}}"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_trunk_weights(net: nn.Module, arch: str, path: str | Path) -> None:
    """Load ``path`` into ``net`` (its ``fc`` is ignored); mismatches name the file."""
    state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path}: does not fit {arch}: {err}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not fit {arch}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    log.info("%s: loaded weights from %s", arch, path)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet trunk, fc removed: ``[B, 3, H, W] -> [B, 512 | 2048]``.

    Weights come only from a local file (``weights_path``: a torchvision state
    dict or ``{"state_dict": ...}``); without one the trunk is randomly
    initialised. Nothing is downloaded. ``trainable=False`` freezes it all.
    Freezing can change between training stages: ``set_trainable(flag)`` (all or
    nothing) or ``freeze(up_to="layer2")`` (stem .. layer2 frozen, the rest
    trained). Frozen parts get no gradients and their BatchNorm layers stay in
    eval mode (running statistics unchanged) even when the model is in train().
    """

    def __init__(self, arch: str, weights_path: str | None = None, trainable: bool = True):
        super().__init__()
        try:
            import torchvision
        except ImportError as err:
            raise ModuleNotFoundError(
                f"the {arch} image encoder needs torchvision: pip install 'retrievalkit[vision]' "
                f"(make install TORCH=cuda; the CPU-only torch build has none) ({err})"
            ) from None

        net = getattr(torchvision.models, arch)(weights=None)
        if weights_path:
            _load_trunk_weights(net, arch, weights_path)
        self.arch = arch
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.frozen_stages = 0
        self.set_trainable(trainable)

    @property
    def trainable(self) -> bool:
        """True when no stage is frozen."""
        return self.frozen_stages == 0

    def _stage_modules(self, stage: str) -> list[nn.Module]:
        if stage == "stem":
            return [self.net.conv1, self.net.bn1]
        return [getattr(self.net, stage)]

    def freeze(self, up_to: str | None = "layer4") -> None:
        """Freeze the stem and every stage up to ``up_to`` (one of ``STAGES``);
        ``None`` unfreezes everything. Later stages become trainable."""
        if up_to is not None and up_to not in STAGES:
            raise ValueError(f"{self.arch}: cannot freeze up to {up_to!r}; use one of {STAGES}")
        self.frozen_stages = 0 if up_to is None else STAGES.index(up_to) + 1
        for index, stage in enumerate(STAGES):
            for module in self._stage_modules(stage):
                module.requires_grad_(index >= self.frozen_stages)
        self.train(self.training)

    def set_trainable(self, trainable: bool) -> None:
        """Unfreeze (``True``) or freeze (``False``) the whole trunk."""
        self.freeze(None if trainable else STAGES[-1])

    def train(self, mode: bool = True) -> TorchvisionResNet:
        super().train(mode)
        for stage in STAGES[: self.frozen_stages]:
            for module in self._stage_modules(stage):
                module.eval()  # frozen BN keeps its running statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, out_dim]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.arch} expects images [B, 3, H, W], got {tuple(images.shape)}")
        return self.net(images)


def _resnet_factory(arch: str) -> Callable[..., TorchvisionResNet]:
    def build(weights_path: str | None = None, trainable: bool = True) -> TorchvisionResNet:
        return TorchvisionResNet(arch, weights_path, trainable)

    build.__name__ = f"build_{arch}"
    build.__doc__ = f"torchvision {arch} trunk (see TorchvisionResNet)."
    return build


for _arch in ("resnet18", "resnet50", "resnet152"):
    IMAGE_ENCODERS.register(_arch)(_resnet_factory(_arch))
