"""Image encoders: ``images [B, C, H, W]`` (or features ``[B, F]``) -> ``[B, out_dim]``.

Outputs are features, not normalized; the projection head and the model's
``encode_image`` make the joint embedding. The torchvision ResNets are in
``resnet.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retrievalkit.models.registry import IMAGE_ENCODERS
from retrievalkit.models.tower import ImageInput


@IMAGE_ENCODERS.register("precomp")
class PrecompFeatureEncoder(nn.Module):
    """Precomputed CNN features (vsepp precomp): ``[B, in_dim] -> [B, out_dim]``.

    With no ``hidden`` layers it is the identity (``out_dim = in_dim``), so the
    features go straight into the projection head as in vsepp; ``hidden=(h1, ...)``
    adds Linear-ReLU-Dropout layers.
    """

    def __init__(self, in_dim: int = 2048, hidden: tuple[int, ...] = (), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            dim = width
        self.mlp = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = dim
        self.image_input = ImageInput(kind="feature", dim=in_dim)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, in_dim]`` -> ``[B, out_dim]``."""
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(
                f"precomp encoder expects features [B, {self.in_dim}] (in_dim), "
                f"got {tuple(features.shape)}"
            )
        return self.mlp(features)


def _conv_block(cin: int, cout: int, stride: int, batchnorm: bool = True) -> nn.Sequential:
    if not batchnorm:  # conv with bias, no statistics over the batch
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)
        )
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@IMAGE_ENCODERS.register("small_cnn")
class SmallCNN(nn.Module):
    """A small CNN for 28-128 px images: ``[B, C, H, W] -> [B, out_dim]``.

    One stage per entry of ``widths``, each of ``blocks_per_stage`` conv(-BN)-ReLU
    blocks; every stage but the first halves the size on entry (``downsample``:
    "stride", a stride-2 first conv, or "maxpool", a 2x2 max pool before it), the
    first one only with ``stem_stride=2``. Then global pooling (``pool``: "avgmax",
    average and max concatenated, or "avg") and a linear layer.

    ``stem_stride=1`` keeps the first stage at full resolution: on 28x28
    Fashion-MNIST (unseen classes, MS loss, 300 steps of batch 100) it raised
    R@1 from 62.7 to 83.5 for 2.8x the step time; the default 2 suits 64 px
    emoji and larger inputs. ``batchnorm=False`` gives conv-ReLU blocks: rows of a
    batch then do not interact, so a data-parallel run equals one process with the
    whole batch (batch norm computes its statistics per rank; see ``train/distributed.py``).
    For Fashion-MNIST's unseen classes a much smaller network generalizes better
    (``widths=(32, 64, 128), blocks_per_stage=1, downsample="maxpool", pool="avg"``:
    the 3-conv net of the ``fashion_mnist_*`` recipes; RESULTS.md, issue 13).
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        out_dim: int = 512,
        stem_stride: int = 2,
        batchnorm: bool = True,
        blocks_per_stage: int = 2,
        downsample: str = "stride",
        pool: str = "avgmax",
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2) or not widths or blocks_per_stage < 1:
            raise ValueError(
                f"small_cnn: stem_stride must be 1 or 2, widths non-empty and "
                f"blocks_per_stage >= 1, got {stem_stride}, {list(widths)}, {blocks_per_stage}"
            )
        if downsample not in ("stride", "maxpool") or pool not in ("avgmax", "avg"):
            raise ValueError(
                f"small_cnn: downsample must be 'stride' or 'maxpool' and pool 'avgmax' or "
                f"'avg', got {downsample!r} and {pool!r}"
            )
        stages: list[nn.Module] = []
        cin = in_channels
        for index, width in enumerate(widths):
            stride = stem_stride if index == 0 else 2
            if downsample == "maxpool" and stride == 2:
                stages.append(nn.MaxPool2d(2))
                stride = 1
            stages.append(_conv_block(cin, width, stride, batchnorm))
            stages += [_conv_block(width, width, 1, batchnorm) for _ in range(blocks_per_stage - 1)]
            cin = width
        self.features = nn.Sequential(*stages)
        self.pool = pool
        self.fc = nn.Linear(2 * cin if pool == "avgmax" else cin, out_dim)
        self.out_dim = out_dim
        self.in_channels = in_channels

    def forward(self, images: Tensor) -> Tensor:
        """``[B, in_channels, H, W]`` -> ``[B, out_dim]``."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"small_cnn expects images [B, {self.in_channels}, H, W], got {tuple(images.shape)}"
            )
        maps = self.features(images)
        pooled = maps.mean(dim=(2, 3))
        if self.pool == "avgmax":
            pooled = torch.cat([pooled, maps.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled)
