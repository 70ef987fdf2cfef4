"""GRU text encoder (VSE++): ``captions: list[str] -> [B, hidden_dim]``.

The other text encoders live in ``textcnn.py`` (dual-path residual TextCNN) and
``minilm.py`` (the pretrained sentence-transformers model from its offline
package). All tokenize inside, on the device of their parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from retrievalkit.models.registry import TEXT_ENCODERS
from retrievalkit.models.word_vectors import load_word_vectors


@TEXT_ENCODERS.register("gru")
class GRUTextEncoder(nn.Module):
    """Word embedding ``[B, L, word_dim]`` -> GRU -> hidden state at each caption's
    true last token ``[B, hidden_dim]`` (padding never reaches the GRU: the batch is
    packed). ``bidirectional=True`` averages the last layer's two directions.

    Word embeddings start uniform in [-0.1, 0.1] as in vsepp, or from a local
    word2vec/GloVe text file (``word_vectors_path``; coverage is logged).
    """

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
            load_word_vectors(self.embed, list(vocab.words), word_vectors_path)
        self.gru = nn.GRU(
            word_dim, hidden_dim, num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.bidirectional = bidirectional
        self.out_dim = hidden_dim

    def tokenize(self, captions: Sequence[str]) -> dict[str, Tensor]:
        """B captions -> ``{"ids": [B, L] int64 (0-padded), "lengths": [B] int64}``."""
        ids, lengths = self.vocab.encode_batch(list(captions))
        return {"ids": ids, "lengths": lengths}

    def forward_tokens(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """``ids [B, L]``, ``lengths [B]`` -> ``[B, hidden_dim]`` without packing (for
        ONNX export): the GRU runs over the padded rows and the state at each
        caption's last token is taken, which padding after it cannot change.
        Unidirectional only (a backward pass would read the padding first)."""
        if self.bidirectional:
            raise ValueError(
                "a bidirectional GRU cannot run unpacked (its backward direction would read "
                "the padding first): token-level forward / ONNX export not supported"
            )
        outputs, _ = self.gru(self.embed(ids))  # [B, L, H]
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
        return outputs.gather(1, last).squeeze(1)

    def forward(self, captions: Sequence[str]) -> Tensor:
        """B captions -> ``[B, hidden_dim]``."""
        ids, lengths = self.vocab.encode_batch(list(captions))  # lengths stay on CPU
        words = self.embed(ids.to(self.embed.weight.device))
        packed = pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)  # [layers * directions, B, H], in input order
        if self.bidirectional:
            return (hidden[-2] + hidden[-1]) / 2
        return hidden[-1]


def parameter_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU if it has none)."""
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
