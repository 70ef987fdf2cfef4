"""Tokenizer, vocabulary (saved as JSON, never pickled) and text augmentation."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from retrievalkit.data.errors import DataError

_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")


def tokenize(text: str) -> list[str]:
    """Lowercase words and single punctuation marks: ``"A dog's toy!"`` ->
    ``["a", "dog's", "toy", "!"]``.

    Words are runs of Unicode letters/digits (``"piñata"``, ``"Bräutigam"`` stay
    whole); scripts written without spaces (Chinese, Japanese) become one token per
    run, so use a subword text encoder for those.
    """
    return _TOKEN.findall(text.lower())


class Vocabulary:
    """Word <-> id. Ids: ``<pad>`` 0, ``<start>`` 1, ``<end>`` 2, ``<unk>`` 3, then words."""

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a vocabulary has each word once")

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first (ties: a-z)."""
        counts = Counter(token for caption in captions for token in tokenize(caption))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, add_start_end: bool = True) -> list[int]:
        ids = [self.index.get(token, self.unk_id) for token in tokenize(caption)]
        return [self.start_id, *ids, self.end_id] if add_start_end else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; stops at ``<end>``, skips ``<pad>`` and ``<start>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.start_id):
                words.append(self.words[i] if 0 <= i < len(self.words) else "<unk>")
        return " ".join(words)

    def encode_batch(
        self, captions: Sequence[str], max_len: int | None = None, add_start_end: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``B`` captions -> ids ``[B, L]`` int64 (padded with 0) and lengths ``[B]``.

        Captions longer than ``max_len`` are cut; every length is at least 1 (an
        empty caption becomes a single ``<unk>`` when not adding start/end).
        """
        encoded = [self.encode(c, add_start_end) or [self.unk_id] for c in captions]
        if max_len is not None:
            encoded = [ids[:max_len] for ids in encoded]
        lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
        width = int(lengths.max()) if len(encoded) else 0
        out = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        for row, ids in enumerate(encoded):
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out, lengths

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": "retrievalkit-vocab-1", "words": self.words}))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            data = json.loads(Path(path).read_text())
            return cls(data["words"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise DataError(
                path, f"not a vocabulary file ({err})", '{"words": [...]} JSON'
            ) from None


def position_shift(
    ids: Tensor, lengths: Tensor, max_shift: int, generator: torch.Generator | None = None
) -> Tensor:
    """Pad each sentence on the left by a random 0..``max_shift`` pads (dual-path paper).

    ``[B, L]`` -> ``[B, L + max_shift]``; row ``b`` holds ``shift_b`` pads, then its
    ``lengths[b]`` tokens, then pads.
    """
    batch, width = ids.shape
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    shifts = torch.randint(0, max_shift + 1, (batch,), generator=generator).to(ids.device)
    source = torch.arange(width + max_shift, device=ids.device)[None, :] - shifts[:, None]
    valid = (source >= 0) & (source < lengths.to(ids.device)[:, None])
    if width == 0:
        return torch.zeros(batch, max_shift, dtype=ids.dtype, device=ids.device)
    gathered = ids.gather(1, source.clamp(0, width - 1))
    return torch.where(valid, gathered, torch.zeros_like(gathered))


def pad_to_length(ids: Tensor, length: int, pad_id: int = Vocabulary.pad_id) -> Tensor:
    """``[B, L]`` -> ``[B, length]``: cut on the right or pad with ``pad_id`` (TextCNN)."""
    batch, width = ids.shape
    if width >= length:
        return ids[:, :length]
    pad = torch.full((batch, length - width), pad_id, dtype=ids.dtype, device=ids.device)
    return torch.cat([ids, pad], dim=1)


def pack_padded(embedded: Tensor, lengths: Tensor) -> torch.nn.utils.rnn.PackedSequence:
    """``[B, L, E]`` + ``lengths [B]`` -> a PackedSequence for a GRU (any order of lengths)."""
    return torch.nn.utils.rnn.pack_padded_sequence(
        embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
