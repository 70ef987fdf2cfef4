"""mFSR image reconstruction (METHODS.md 2): a DCGAN generator and two discriminators.

Images here are in pixel range ``[-1, 1]`` (the generator ends in ``tanh``, as
in DCGAN); :func:`to_pixel_range` maps the data's normalized images there.

- :class:`ImageGenerator` ``G``: ``code [B, K] -> image [B, C, S, S]``, the DCGAN
  generator (Radford et al. 2016; the PyTorch ``examples/dcgan`` layout:
  transposed convolutions 4x4 -> 8x8 -> ... -> S, BN + ReLU, ``tanh`` out),
  generalized to any power-of-two size ``S >= 16``. Its input is the image's
  own ``[v_mo; v_se; v_sp]`` (no noise: it reconstructs, it does not sample).
- :class:`ImageDiscriminator` ``D1``: ``image -> logit [B]``, real vs generated,
  the DCGAN discriminator (strided convolutions, BN + LeakyReLU 0.2).
- :class:`PairDiscriminator` ``D2``: ``(reference, candidate) -> logit [B]``,
  "does the candidate show the same content as the reference image?". mFSR
  takes D2 from R2GAN (Zhu et al., CVPR 2019, "one generator and dual
  discriminators"), because D1 alone only asks whether an image looks real,
  not whether it is *this* image. The article's text does not give D2's
  inputs, so we use the matching-aware form of GAN-CLS (Reed et al., ICML
  2016) on image pairs: the two images are concatenated along channels and
  judged by a DCGAN discriminator with ``2C`` input channels. Its training
  pairs (see ``losses/mfsr.py``): positive = (real, a slightly translated copy
  of itself), negatives = (real, its reconstruction) and (real, another image
  of the batch); the generator wants (real, its reconstruction) judged
  positive.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn


def check_image_size(size: int) -> int:
    """``log2(size)`` for a power of two ``>= 16``; a clear error otherwise."""
    if not isinstance(size, int) or size < 16 or size & (size - 1):
        raise ValueError(f"image size for the GAN must be a power of two >= 16, got {size!r}")
    return int(math.log2(size))


def _channels(base: int, level: int, max_channels: int) -> int:
    return min(base * 2**level, max_channels)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialization: conv weights ~ N(0, 0.02), BN scale ~ N(1, 0.02), BN bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ImageGenerator(nn.Module):
    """DCGAN generator: ``code [B, code_dim] -> images [B, channels, size, size]`` in [-1, 1].

    Args:
        code_dim: input size (``3 * part_dim`` in mFSR).
        size: output side, a power of two >= 16 (64 for the built-in emoji).
        channels: image channels (3 RGB, 1 greyscale).
        base_channels: ``ngf``, the width of the last hidden layer; the width
            doubles at each coarser level (``ngf * 8`` at 4x4 for size 64).
        max_channels: cap on the width (large sizes would otherwise grow it).
    """

    def __init__(
        self,
        code_dim: int,
        size: int = 64,
        channels: int = 3,
        base_channels: int = 64,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        ups = check_image_size(size) - 2  # 4x4 -> size takes this many doublings
        widths = [_channels(base_channels, ups - 1 - i, max_channels) for i in range(ups)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(code_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for cin, cout in itertools.pairwise(widths):
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        self.code_dim, self.size, self.channels = code_dim, size, channels

    def forward(self, code: Tensor) -> Tensor:
        """``[B, code_dim]`` -> ``[B, channels, size, size]`` in [-1, 1]."""
        if code.dim() != 2 or code.shape[1] != self.code_dim:
            raise ValueError(
                f"generator expects a code [B, {self.code_dim}], got {tuple(code.shape)}"
            )
        return self.net(code[:, :, None, None])


class ImageDiscriminator(nn.Module):
    """DCGAN discriminator: ``images [B, channels, size, size] -> logits [B]`` (D1).

    Strided 4x4 convolutions halve the size down to 4x4 (no BN on the first, BN
    on the others, LeakyReLU 0.2), then a 4x4 convolution to one logit. Logits,
    not probabilities: the losses use ``binary_cross_entropy_with_logits``.
    """

    def __init__(
        self,
        size: int = 64,
        channels: int = 3,
        base_channels: int = 64,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        downs = check_image_size(size) - 2
        widths = [_channels(base_channels, i, max_channels) for i in range(downs)]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for cin, cout in itertools.pairwise(widths):
            layers += [
                nn.Conv2d(cin, cout, 4, 2, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)
        self.size, self.channels = size, channels

    def forward(self, images: Tensor) -> Tensor:
        """``[B, channels, size, size]`` -> ``[B]`` logits ("real")."""
        expected = (self.channels, self.size, self.size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"discriminator expects images [B, {', '.join(map(str, expected))}], "
                f"got {tuple(images.shape)}"
            )
        return self.net(images).flatten()


class PairDiscriminator(nn.Module):
    """``(reference, candidate) -> logits [B]``: same content? (D2, see the module doc).

    A DCGAN discriminator on the two images concatenated along channels
    (``[B, 2 * channels, size, size]``); options as :class:`ImageDiscriminator`.
    """

    def __init__(
        self,
        size: int = 64,
        channels: int = 3,
        base_channels: int = 64,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        self.body = ImageDiscriminator(size, 2 * channels, base_channels, max_channels)

    def forward(self, reference: Tensor, candidate: Tensor) -> Tensor:
        """Two ``[B, C, S, S]`` batches (row ``i`` of each is one pair) -> ``[B]`` logits."""
        if reference.shape != candidate.shape:
            raise ValueError(
                f"pair discriminator: reference {tuple(reference.shape)} and candidate "
                f"{tuple(candidate.shape)} differ in shape"
            )
        return self.body(torch.cat([reference, candidate], dim=1))


def to_pixel_range(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Normalized images ``(x - mean) / std`` ``[B, C, H, W]`` -> pixels in [-1, 1].

    ``mean``/``std`` per channel, those the data was normalized with
    (``data/transforms.py``: ImageNet's for RGB, 0.5/0.5 for greyscale). Values outside [0, 1] after
    undoing the normalization are clamped.
    """
    if images.dim() != 4 or images.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"to_pixel_range: images [B, {len(mean)}, H, W] with {len(mean)} means and stds "
            f"expected, got images {tuple(images.shape)}, {len(mean)} means, {len(std)} stds"
        )
    m = images.new_tensor(mean).view(1, -1, 1, 1)
    s = images.new_tensor(std).view(1, -1, 1, 1)
    return ((images * s + m).clamp(0.0, 1.0) * 2.0 - 1.0).detach()


def random_translate(
    images: Tensor, max_shift: int, generator: torch.Generator | None = None
) -> Tensor:
    """Each image shifted by its own random ``(dy, dx)`` in ``[-max_shift, max_shift]``,
    edges repeated: ``[B, C, H, W] -> [B, C, H, W]`` (D2's positive pairs)."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    batch, _, height, width = images.shape
    device = images.device
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch), generator=generator)
    dy, dx = shifts.to(device)
    rows = (torch.arange(height, device=device)[None] - dy[:, None]).clamp(0, height - 1)
    cols = (torch.arange(width, device=device)[None] - dx[:, None]).clamp(0, width - 1)
    picked = images[
        torch.arange(batch, device=device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ]
    return picked.permute(0, 3, 1, 2)  # advanced indices first: [B, H, W, C] -> [B, C, H, W]
