"""Image encoders: ``images [B, C, H, W]`` (or features ``[B, F]``) -> ``[B, out_dim]``.

Outputs are features, not normalized; the projection head and the model's
``encode_image`` make the joint embedding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from retrievalkit.models.registry import IMAGE_ENCODERS

log = logging.getLogger(__name__)


@IMAGE_ENCODERS.register("precomp")
class PrecompFeatureEncoder(nn.Module):
    """Precomputed CNN features (vsepp precomp): identity, or an MLP with ``hidden``
    layers. ``[B, in_dim] -> [B, out_dim]``."""

    def __init__(self, in_dim: int = 2048, hidden: tuple[int, ...] = (), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            dim = width
        self.mlp = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2:
            raise ValueError(
                f"precomp encoder expects features [B, F], got {tuple(features.shape)}"
            )
        return self.mlp(features)


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@IMAGE_ENCODERS.register("small_cnn")
class SmallCNN(nn.Module):
    """A small CNN for 28-128 px images: conv-BN-ReLU stages, each halving the size,
    then global average + max pooling. ``[B, C, H, W] -> [B, out_dim]``."""

    def __init__(
        self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256), out_dim: int = 512
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        cin = in_channels
        for width in widths:
            stages += [_conv_block(cin, width, 2), _conv_block(width, width, 1)]
            cin = width
        self.features = nn.Sequential(*stages)
        self.fc = nn.Linear(2 * cin, out_dim)
        self.out_dim = out_dim
        self.in_channels = in_channels

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"small_cnn expects images [B, {self.in_channels}, H, W], got {tuple(images.shape)}"
            )
        maps = self.features(images)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a local file: a plain state dict or ``{"state_dict": ...}``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights file not found") from None
    except Exception as err:
        raise ValueError(f"{path}: not a PyTorch weights file ({err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet trunk (fc removed): ``[B, 3, H, W] -> [B, 512|2048]``.

    Weights come only from a local file (``weights_path``); nothing is downloaded.
    ``trainable=False`` freezes it (BN kept in eval mode); ``set_trainable`` flips it.
    """

    def __init__(self, arch: str, weights_path: str | None = None, trainable: bool = True):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, arch)(weights=None)
        if weights_path:
            state = load_state_dict_file(weights_path)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(
                    f"{weights_path}: does not fit {arch} (missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]})"
                )
            log.info("%s: loaded weights from %s", arch, weights_path)
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.trainable = True
        self.set_trainable(trainable)

    def set_trainable(self, trainable: bool) -> None:
        self.trainable = trainable
        for param in self.net.parameters():
            param.requires_grad_(trainable)
        if not trainable:
            self.net.eval()

    def train(self, mode: bool = True) -> TorchvisionResNet:
        super().train(mode)
        if not self.trainable:
            self.net.eval()  # frozen BN keeps its running statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def _resnet_factory(arch: str):
    def build(weights_path: str | None = None, trainable: bool = True) -> TorchvisionResNet:
        return TorchvisionResNet(arch, weights_path, trainable)

    build.__name__ = f"build_{arch}"
    return build


for _arch in ("resnet18", "resnet50", "resnet152"):
    IMAGE_ENCODERS.register(_arch)(_resnet_factory(_arch))
