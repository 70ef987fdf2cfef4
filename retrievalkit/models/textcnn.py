"""Residual TextCNN of the dual-path model (Zheng et al., METHODS.md 5).

A sentence is a one-pixel-high image ``[B, C, 1, L]``: the word embedding is the
first (1x1) convolution over one-hot words, then ResNet stages whose
convolutions are 1x2 (a word and its left neighbour), then global max pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.models.registry import TEXT_ENCODERS
from retrievalkit.models.word_vectors import load_word_vectors


def _conv1x2(cin: int, cout: int, stride: int) -> nn.Sequential:
    """1x2 convolution padded by one position on the left: ``L -> ceil(L / stride)``."""
    return nn.Sequential(
        nn.ZeroPad2d((1, 0, 0, 0)),
        nn.Conv2d(cin, cout, (1, 2), stride=(1, stride), bias=False),
    )


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=(1, stride), bias=False)


class ResidualBlock1x2(nn.Module):
    """A ResNet block over a sentence map ``[B, Cin, 1, L] -> [B, Cout, 1, ceil(L / stride)]``.

    ``bottleneck=True``: 1x1 (Cout/4) -> 1x2 -> 1x1 (Cout), as in the reference
    code's ResNet-50-like TextCNN; otherwise two 1x2 convolutions (basic block).
    The shortcut is a strided 1x1 convolution + BN when the shape changes.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, bottleneck: bool = True) -> None:
        super().__init__()
        if bottleneck:
            mid = max(cout // 4, 1)
            layers = [
                _conv1x1(cin, mid),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                _conv1x2(mid, mid, stride),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                _conv1x1(mid, cout),
                nn.BatchNorm2d(cout),
            ]
        else:
            layers = [
                _conv1x2(cin, cout, stride),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                _conv1x2(cout, cout, 1),
                nn.BatchNorm2d(cout),
            ]
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if cin != cout or stride != 1:
            self.shortcut = nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _check_stages(blocks: Sequence[int], widths: Sequence[int], strides: Sequence[int]) -> None:
    if not (len(blocks) == len(widths) == len(strides)) or not blocks:
        raise ValueError(
            "textcnn: blocks, widths and strides need one entry per stage, got "
            f"blocks={list(blocks)}, widths={list(widths)}, strides={list(strides)}"
        )
    if min(blocks) < 1 or min(widths) < 1 or min(strides) < 1:
        raise ValueError("textcnn: blocks, widths and strides must be positive integers")


@TEXT_ENCODERS.register("textcnn")
class ResidualTextCNN(nn.Module):
    """Residual TextCNN: captions -> ``[B, widths[-1]]`` (max-pooled, not normalized).

    Defaults follow the reference code (layumi/Image-Text-Embedding): 300-d word
    embedding (+ BN) as the first convolution, bottleneck stages of (3, 4, 6, 1)
    blocks with widths (256, 512, 1024, 2048), strides (1, 2, 2, 1) along the
    words, sentences cut to ``max_len = 32``. Every sentence is padded to a fixed
    width of ``max_len + max_shift`` so training and evaluation see the same
    length. Position shift (training mode only): each sentence is moved right by
    a random 0..``max_shift`` pads, drawn from the module's own generator seeded
    with ``seed``; its state is part of ``state_dict()`` (key ``_extra_state``) so
    a resumed run draws the same shifts.
    """

    def __init__(
        self,
        vocab: Any,
        word_dim: int = 300,
        blocks: Sequence[int] = (3, 4, 6, 1),
        widths: Sequence[int] = (256, 512, 1024, 2048),
        strides: Sequence[int] = (1, 2, 2, 1),
        bottleneck: bool = True,
        max_len: int = 32,
        max_shift: int = 4,
        seed: int = 0,
        word_vectors_path: str | None = None,
    ) -> None:
        super().__init__()
        _check_stages(blocks, widths, strides)
        if max_len < 1 or max_shift < 0:
            raise ValueError(
                f"textcnn: need max_len >= 1 and max_shift >= 0, got {max_len}, {max_shift}"
            )
        self.vocab, self.max_len, self.max_shift = vocab, max_len, max_shift
        self.embed = nn.Embedding(len(vocab), word_dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.1)
        with torch.no_grad():
            self.embed.weight[0].zero_()  # padding is an all-zero one-hot column
        if word_vectors_path:
            load_word_vectors(self.embed, list(vocab.words), word_vectors_path)
        self.embed_bn = nn.BatchNorm2d(word_dim)
        layers: list[nn.Module] = []
        cin = word_dim
        for count, width, stride in zip(blocks, widths, strides, strict=True):
            for index in range(count):
                layers.append(ResidualBlock1x2(cin, width, stride if index == 0 else 1, bottleneck))
                cin = width
        self.blocks = nn.Sequential(*layers)
        self.out_dim = cin
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def token_ids(self, captions: Sequence[str]) -> Tensor:
        """Captions -> ids ``[B, max_len + max_shift]`` (CPU), shifted in training mode."""
        from retrievalkit.data.text import position_shift

        ids, lengths = self.vocab.encode_batch(list(captions), max_len=self.max_len)
        if self.training and self.max_shift > 0:
            ids = position_shift(ids, lengths, self.max_shift, self.generator)
        return F.pad(ids, (0, self.max_len + self.max_shift - ids.shape[1]), value=0)

    def tokenize(self, captions: Sequence[str]) -> dict[str, Tensor]:
        """B captions -> ``{"ids": [B, max_len + max_shift]}`` (shifted in training mode)."""
        return {"ids": self.token_ids(captions)}

    def forward(self, captions: Sequence[str]) -> Tensor:
        """B captions -> ``[B, out_dim]``."""
        return self.forward_tokens(self.token_ids(captions).to(self.embed.weight.device))

    def forward_tokens(self, ids: Tensor) -> Tensor:
        """``ids [B, W]`` -> ``[B, out_dim]``."""
        words = self.embed(ids).transpose(1, 2).unsqueeze(2)  # [B, E, 1, W]
        maps = self.blocks(self.embed_bn(words))  # [B, C, 1, W']
        return maps.amax(dim=(2, 3))

    def get_extra_state(self) -> Tensor:
        """The position-shift generator's state (a uint8 tensor) for checkpoints."""
        return self.generator.get_state()

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(torch.as_tensor(state, dtype=torch.uint8).cpu())
