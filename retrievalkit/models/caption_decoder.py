"""mFSR caption reconstruction (METHODS.md 2): ``[l_mo; l_se; l_sp]`` -> the caption.

A fully connected layer (the article's FC2) maps the caption's code to the
initial hidden state of a GRU decoder, which then regenerates the caption word
by word (the usual RNN captioner: Show and Tell, Vinyals et al. 2015, with the
code as the initial state). Training uses teacher forcing; :meth:`greedy`
decodes for inspection (``captions.txt`` at the end of a run).

Token ids come from the run's :class:`~retrievalkit.data.text.Vocabulary`
(``<pad>`` 0, ``<start>`` 1, ``<end>`` 2): ``vocab.encode_batch`` gives
``<start> w1 .. wn <end>`` rows padded with 0, and :func:`teacher_forcing`
splits them into the decoder's inputs and targets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

PAD_ID, START_ID, END_ID = 0, 1, 2


def teacher_forcing(ids: Tensor) -> tuple[Tensor, Tensor]:
    """``ids [B, L]`` (``<start> ... <end>``, 0-padded) -> ``inputs [B, L-1]`` (all but the
    last position) and ``targets [B, L-1]`` (all but ``<start>``; padding stays 0)."""
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"caption ids must be [B, L] with L >= 2, got {tuple(ids.shape)}")
    return ids[:, :-1], ids[:, 1:]


class CaptionDecoder(nn.Module):
    """FC + GRU: ``code [B, code_dim]`` and ``inputs [B, T]`` -> ``logits [B, T, vocab_size]``.

    Args:
        code_dim: ``3 * part_dim`` in mFSR.
        vocab_size: number of token ids (``len(vocab)``).
        word_dim: the decoder's own word embedding size.
        hidden_dim: GRU width.
        num_layers: stacked GRU layers; each starts from the same ``tanh(FC(code))``.
    """

    def __init__(
        self,
        code_dim: int,
        vocab_size: int,
        word_dim: int = 300,
        hidden_dim: int = 512,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(code_dim, hidden_dim)
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=PAD_ID)
        self.gru = nn.GRU(word_dim, hidden_dim, num_layers, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.code_dim, self.vocab_size, self.num_layers = code_dim, vocab_size, num_layers

    def initial_state(self, code: Tensor) -> Tensor:
        """``[B, code_dim]`` -> GRU state ``[num_layers, B, hidden_dim]``."""
        if code.dim() != 2 or code.shape[1] != self.code_dim:
            raise ValueError(
                f"caption decoder expects a code [B, {self.code_dim}], got {tuple(code.shape)}"
            )
        state = torch.tanh(self.fc(code))
        return state.unsqueeze(0).repeat(self.num_layers, 1, 1).contiguous()

    def forward(self, code: Tensor, inputs: Tensor) -> Tensor:
        """Teacher forcing: ``code [B, code_dim]``, ``inputs [B, T]`` (token ``t`` is the
        word before the one predicted at ``t``) -> ``logits [B, T, vocab_size]``.

        Positions after a caption's end see padding as input; their targets are
        padding too, which the caption loss ignores.
        """
        if inputs.dim() != 2 or inputs.shape[0] != code.shape[0]:
            raise ValueError(
                f"caption decoder: inputs [B, T] with B = {code.shape[0]} expected, "
                f"got {tuple(inputs.shape)}"
            )
        hidden, _ = self.gru(self.embed(inputs), self.initial_state(code))
        return self.out(hidden)

    @torch.no_grad()
    def greedy(self, code: Tensor, max_len: int = 20) -> Tensor:
        """Most likely word at each step from ``<start>``: ``[B, code_dim]`` -> ids
        ``[B, <= max_len]`` (rows stop at ``<end>``; positions after it are 0)."""
        state = self.initial_state(code)
        token = torch.full((code.shape[0], 1), START_ID, dtype=torch.long, device=code.device)
        done = torch.zeros(code.shape[0], dtype=torch.bool, device=code.device)
        steps: list[Tensor] = []
        for _ in range(max_len):
            hidden, state = self.gru(self.embed(token), state)
            token = self.out(hidden).argmax(dim=-1)  # [B, 1]
            token = token.masked_fill(done[:, None], PAD_ID)
            steps.append(token)
            done |= token.squeeze(1) == END_ID
            if bool(done.all()):
                break
        return torch.cat(steps, dim=1)

    def decode_strings(self, code: Tensor, vocab: Any, max_len: int = 20) -> list[str]:
        """Greedy captions as text via ``vocab.decode`` (stops at ``<end>``)."""
        return [vocab.decode(row.tolist()) for row in self.greedy(code, max_len)]
