"""Cross-batch memory: past embeddings as extra references for a metric loss.

Order (defined, tested): each call computes the loss of the batch against the
memory as it was BEFORE the call, then enqueues the batch (detached) into a
ring buffer, overwriting the oldest entries first. The batch's self-pairs are
excluded by the wrapped loss; memory entries are other samples. During the first
``warmup_steps`` calls the memory is filled but not used. Only ``B x (B + M)``
similarities are computed. The queue, its labels, the write position, the fill
count and the step count are buffers, so checkpoints keep them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from retrievalkit.losses.core import PairLoss


class CrossBatchMemory(nn.Module):
    """``CrossBatchMemory(loss, embedding_dim, memory_size)(embeddings [B, D], labels [B])``."""

    def __init__(
        self, loss: PairLoss, embedding_dim: int, memory_size: int, warmup_steps: int = 0
    ) -> None:
        super().__init__()
        if not getattr(loss, "accepts_references", False):
            raise ValueError(f"{type(loss).__name__} takes no references: it cannot use a memory")
        if memory_size < 1:
            raise ValueError(f"memory_size must be at least 1, got {memory_size}")
        self.loss = loss
        self.memory_size, self.warmup_steps = memory_size, warmup_steps
        self.register_buffer("embeddings", torch.zeros(memory_size, embedding_dim))
        self.register_buffer("labels", torch.zeros(memory_size, dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def memory(self) -> tuple[Tensor, Tensor]:
        """The stored ``[M', D]`` embeddings and ``[M']`` labels, oldest first."""
        filled = int(self.filled)
        if filled < self.memory_size:
            return self.embeddings[:filled], self.labels[:filled]
        order = (
            torch.arange(int(self.position), int(self.position) + self.memory_size)
            % self.memory_size
        )
        return self.embeddings[order], self.labels[order]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        use_memory = int(self.steps) >= self.warmup_steps and int(self.filled) > 0
        if use_memory:
            ref_emb, ref_labels = self.memory()
            value = self.loss(embeddings, labels, ref_emb, ref_labels)
        else:
            value = self.loss(embeddings, labels)
        self.enqueue(embeddings.detach(), labels)
        self.steps += 1
        return value

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor) -> None:
        """Write a batch at the ring position (a batch larger than the memory keeps its tail)."""
        embeddings, labels = embeddings[-self.memory_size :], labels[-self.memory_size :]
        n = embeddings.shape[0]
        slots = (torch.arange(n, device=self.embeddings.device) + self.position) % self.memory_size
        self.embeddings[slots] = embeddings.to(self.embeddings.dtype)
        self.labels[slots] = labels.to(self.labels.device)
        self.position.copy_((self.position + n) % self.memory_size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.memory_size))
